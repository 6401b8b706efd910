using System.IO;
using System.Linq;
using VDiskPS.Formats.Ova;
using VDiskPS.Formats.Tests.Http;
using Xunit;

namespace VDiskPS.Formats.Tests.Ova
{
    /// <summary>
    /// OVF packages read straight from a web server (a real nginx on 127.0.0.1): an .ova by range
    /// requests into the archive, an .ovf with its files beside it on the server. The packages are built
    /// by GNU tar, qemu-img and coreutils (see <see cref="OvaFixtures"/>); what is converted out of them
    /// is judged by qemu-img compare against the raw disks they were made from, and nginx's access log
    /// shows that only ranges were fetched.
    /// </summary>
    public sealed class OvaHttpTests : System.IDisposable
    {
        private const long DiskSize = 8L << 20;
        private readonly Nginx _nginx = new Nginx();
        private readonly TempDir _dir = new TempDir();

        public void Dispose()
        {
            _nginx.Dispose();
            _dir.Dispose();
        }

        private string Serve(string file, string relative)
        {
            string served = _nginx.File(relative);
            Directory.CreateDirectory(Path.GetDirectoryName(served));
            File.Copy(file, served, true);
            return _nginx.Url(relative);
        }

        [Fact]
        public void AnOvaOnAWebServerIsDescribedAndItsDisksConvertByRangeRequests()
        {
            string a = OvaFixtures.Raw(_dir, "a.raw", DiskSize, 1);
            string b = OvaFixtures.Raw(_dir, "b.raw", 2 * DiskSize, 5);
            string ova = OvaFixtures.ForeignOva(_dir, new[] { a, b });
            string url = Serve(ova, "vm/appliance.ova");

            using (var package = OvfPackage.Open(url))
            {
                Assert.True(package.HasManifest);
                Assert.Equal(url, package.Path);
                var infos = package.DescribeDisks();
                Assert.Equal(new[] { ("disk1.vmdk", "vmdisk1"), ("disk2.vmdk", "vmdisk2") }, infos.Select(i => (i.Member, i.DiskId)));
                Assert.All(infos, i => Assert.Equal(url, i.Path));
                Assert.Equal(new FileInfo(Path.Combine(_dir.Path, "appliance-parts", "disk2.vmdk")).Length, infos[1].FileSize);
                Assert.Equal(2 * DiskSize, infos[1].Size);

                package.Convert("disk2.vmdk", _dir.File("b.vhdx"), new ConvertOptions { TargetFormat = Fmt.Vhdx });
                package.Convert("vmdisk1", _dir.File("a.qcow2"), new ConvertOptions { TargetFormat = Fmt.Qcow2 });
            }

            Assert.True(Qemu.Compare(b, "raw", _dir.File("b.vhdx"), "vhdx").Identical);
            Assert.True(Qemu.Compare(a, "raw", _dir.File("a.qcow2"), "qcow2").Identical);

            // Every answer was a range (206), and no more was fetched than twice the archive (the two
            // disks once each for the copies and their digests, the headers for the descriptions).
            var requests = _nginx.Requests("/vm/appliance.ova");
            Assert.NotEmpty(requests);
            Assert.All(requests, r => Assert.Equal(206, r.Status));
            Assert.True(requests.Sum(r => r.Bytes) <= 2 * new FileInfo(ova).Length, $"{requests.Sum(r => r.Bytes)} bytes fetched of a {new FileInfo(ova).Length}-byte archive");
        }

        [Fact]
        public void AMemberOnTheServerThatDoesNotMatchTheManifestIsCorruptAndLeavesNoOutput()
        {
            string a = OvaFixtures.Raw(_dir, "a.raw", DiskSize, 1);
            string ova = OvaFixtures.ForeignOva(_dir, new[] { a });
            string parts = Path.Combine(_dir.Path, "appliance-parts");
            OvaReadTests.CorruptPadding(Path.Combine(parts, "disk1.vmdk"));
            OvaFixtures.Tool("tar", parts, "--format=ustar", "-cf", ova, "appliance.ovf", "disk1.vmdk", "appliance.mf");
            string url = Serve(ova, "appliance.ova");

            string output = _dir.File("out.vhdx");
            using var package = OvfPackage.Open(url);
            var e = Assert.Throws<ImageCorruptException>(() => package.Convert(null, output, new ConvertOptions { TargetFormat = Fmt.Vhdx }));
            Assert.Contains("disk1.vmdk", e.Message);
            Assert.Contains(url, e.Message);
            Assert.Empty(Directory.GetFiles(_dir.Path, "*out.vhdx*"));
        }

        [Theory]
        [InlineData(true)]
        [InlineData(false)]
        public void AnOvfOnTheServerReadsTheFilesBesideItAndItsManifestWhenThereIsOne(bool withManifest)
        {
            string a = OvaFixtures.Raw(_dir, "a.raw", DiskSize, 3);
            string folder = _nginx.File("folder");
            Directory.CreateDirectory(folder);
            OvaFixtures.ForeignParts(folder, new[] { a }, "sha256sum", false, "vm");
            if (!withManifest)
            {
                File.Delete(Path.Combine(folder, "vm.mf"));
            }

            string url = _nginx.Url("folder/vm.ovf");
            using (var package = OvfPackage.Open(url))
            {
                Assert.Equal(withManifest, package.HasManifest);
                var info = package.DescribeDisks().Single();
                Assert.Equal(("disk1.vmdk", new FileInfo(Path.Combine(folder, "disk1.vmdk")).Length), (info.Member, info.FileSize));
                package.Convert(null, _dir.File("a.vhd"), new ConvertOptions { TargetFormat = Fmt.Vhd });
            }

            Assert.True(Qemu.Compare(a, "raw", _dir.File("a.vhd"), "vpc").Identical);
            Assert.Contains(_nginx.Requests("/folder/disk1.vmdk"), r => r.Status == 206);
            Assert.Contains(_nginx.Requests("/folder/vm.mf"), r => r.Status == (withManifest ? 206 : 404));
        }

        [Fact]
        public void AFileTheDescriptorNamesThatTheServerDoesNotHaveIsNotFoundNamingItsUrl()
        {
            string a = OvaFixtures.Raw(_dir, "a.raw", DiskSize, 3);
            string folder = _nginx.File("gone");
            Directory.CreateDirectory(folder);
            OvaFixtures.ForeignParts(folder, new[] { a }, "sha256sum", false, "vm");
            File.Delete(Path.Combine(folder, "vm.mf"));
            File.Delete(Path.Combine(folder, "disk1.vmdk"));

            using var package = OvfPackage.Open(_nginx.Url("gone/vm.ovf"));
            var e = Assert.Throws<ImageRemoteException>(() => package.Convert(null, _dir.File("a.vhd"), new ConvertOptions { TargetFormat = Fmt.Vhd }));
            Assert.Equal(("PathNotFound", 404), (e.ErrorId, e.StatusCode));
            Assert.Contains(_nginx.Url("gone/disk1.vmdk"), e.Message);
            Assert.False(File.Exists(_dir.File("a.vhd")));
        }

        [Fact]
        public void AnOvaFromAServerThatIgnoresRangesIsRefusedByName()
        {
            string a = OvaFixtures.Raw(_dir, "a.raw", DiskSize, 1);
            string url = Serve(OvaFixtures.ForeignOva(_dir, new[] { a }), "noranges/appliance.ova");
            var e = Assert.Throws<ImageNotSupportedException>(() => OvfPackage.Open(url));
            Assert.Contains("ignores range requests", e.Message);
            Assert.Contains(url, e.Message);
        }
    }
}
