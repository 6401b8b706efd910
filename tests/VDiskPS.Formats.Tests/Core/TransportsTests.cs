using System.IO;
using VDiskPS.Formats;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    // Location rules beneath every format; no outside tool knows them, so the engine is the oracle.
    public class TransportsTests
    {
        [Theory]
        [InlineData("nbd://127.0.0.1:10809/x", true)]
        [InlineData("nbd+unix:///x?socket=/tmp/s", true)]
        [InlineData("https://example.org/disk.qcow2", true)]
        [InlineData("C:\\images\\disk.vhdx", false)]
        [InlineData("/srv/disk.qcow2", false)]
        [InlineData("disk.qcow2", false)]
        [InlineData("a:/b", false)]
        public void A_location_is_remote_only_with_a_scheme_and_two_slashes(string location, bool remote)
            => Assert.Equal(remote, Transports.IsRemote(location));

        [Fact]
        public void A_url_no_transport_serves_is_refused_by_its_scheme_not_looked_up_as_a_file()
        {
            var e = Assert.Throws<ImageNotSupportedException>(() => HostFile.Open("gopher://127.0.0.1/disk.qcow2", HostAccess.Read));
            Assert.Contains("'gopher://' locations are not supported", e.Message);
            Assert.Throws<ImageNotSupportedException>(() => FormatRegistry.Default.Open("gopher://127.0.0.1/disk.qcow2", null, new OpenOptions()));
        }

        [Fact]
        public void Local_paths_stay_paths()
        {
            Assert.Equal(Path.GetFullPath("x.qcow2"), Transports.GetFullLocation("x.qcow2"));
            Assert.Equal("x.qcow2", Transports.FileNameOf(Path.Combine("dir", "x.qcow2")));
            Assert.Equal(Path.Combine(Path.GetFullPath("dir"), "base.qcow2"), new BackingReference("base.qcow2", null).Resolve(Path.Combine("dir", "top.qcow2")));
        }
    }
}
