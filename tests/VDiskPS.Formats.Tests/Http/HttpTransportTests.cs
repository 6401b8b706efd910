using System;
using System.IO;
using System.Linq;
using System.Net;
using System.Text.Json;
using System.Threading;
using VDiskPS.Formats.Http;
using Xunit;

namespace VDiskPS.Formats.Tests.Http
{
    /// <summary>
    /// Images read over HTTP(S) from a real nginx, judged by qemu-img on the local originals: what is
    /// converted from the URL compares equal, what Get/Map report of the URL is what qemu-img reports
    /// of the file; nginx's access log proves the reads are ranged.
    /// </summary>
    public sealed class HttpTransportTests : IDisposable
    {
        private const int MiB = 1 << 20;
        private readonly Nginx _nginx = new Nginx();
        private readonly TempDir _local = new TempDir();

        public void Dispose()
        {
            _nginx.Dispose();
            _local.Dispose();
        }

        /// <summary>A qcow2 with data scattered over 24 MiB, made by qemu-io, in the served folder.</summary>
        private string ServeQcow2(string relative, string size = "24M")
        {
            string path = _nginx.File(relative);
            Qemu.Img("create", "-q", "-f", "qcow2", path, size);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x22 7M 64k", "-c", "write -P 0x33 12345k 2M", "-c", "write -z 20M 1M", path);
            return path;
        }

        private string ConvertToLocal(string url, DiskFormat? format = null)
        {
            DiskFormat target = format ?? Fmt.Raw;
            string output = _local.File(Guid.NewGuid().ToString("N") + "." + target.ToQemuName());
            ConvertOperation.Run(url, output, new ConvertOptions { TargetFormat = target });
            return output;
        }

        [Fact]
        public void A_qcow2_converted_from_a_url_equals_the_original_and_every_read_is_one_ranged_request_per_block()
        {
            string original = ServeQcow2("disk.qcow2");
            string output = ConvertToLocal(_nginx.Url("disk.qcow2"));

            var compare = Qemu.Compare(original, "qcow2", output, "raw");
            Assert.True(compare.Identical, compare.Output);
            var requests = _nginx.Requests("/disk.qcow2");
            Assert.NotEmpty(requests);
            Assert.All(requests, r => Assert.StartsWith("bytes=", r.Range));
            Assert.All(requests, r => Assert.Equal(206, r.Status));

            // Each open (probe, chain) fetches the first block again; data blocks are fetched once.
            long blocks = (new FileInfo(original).Length + HttpSource.BlockSize - 1) / HttpSource.BlockSize;
            Assert.True(requests.Count <= blocks + 4, $"{requests.Count} requests for a file of {blocks} blocks");
        }

        [Fact]
        public void A_qcow2_chain_on_a_web_server_resolves_its_relative_backing_file_against_the_url()
        {
            Directory.CreateDirectory(_nginx.File("chain"));
            string basePath = ServeQcow2("chain/base.qcow2");
            string top = _nginx.File("chain/top.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top);
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x44 1M 512k", top);

            string output = ConvertToLocal(_nginx.Url("chain/top.qcow2"), Fmt.Qcow2);

            var compare = Qemu.Compare(top, "qcow2", output, "qcow2");
            Assert.True(compare.Identical, compare.Output);
            Assert.NotEmpty(_nginx.Requests("/chain/base.qcow2"));
            Assert.Equal(_nginx.Url("chain/base.qcow2"), ImageInspector.Get(_nginx.Url("chain/top.qcow2")).ParentFullPath);
        }

        /// <summary>
        /// VHD and VHDX children record their parent in parent locators (relative and absolute forms): the
        /// relative one resolves against the child's URL. qemu-img opens neither differencing image, so
        /// libvhdi judges the child from the local files.
        /// </summary>
        [Theory]
        [InlineData("vhd")]
        [InlineData("vhdx")]
        public void A_differencing_child_on_a_web_server_reads_its_parent_through_the_url(string name)
        {
            DiskFormat format = DiskFormat.Parse(name);
            string child = ServeDifferencing(name);

            string fromUrl = ConvertToLocal(_nginx.Url("diff/child." + name));

            Assert.NotEmpty(_nginx.Requests("/diff/base." + name));
            Assert.Equal(_nginx.Url("diff/base." + name), ImageInspector.Get(_nginx.Url("diff/child." + name)).ParentFullPath);
            Judge.AssertSameContent(child, format, fromUrl);
        }

        /// <summary>A VDI child names its parent only by UUID, found by listing the folder, which a URL cannot do: a clear refusal, nothing written.</summary>
        [Fact]
        public void A_differencing_vdi_on_a_web_server_is_refused_because_its_parent_cannot_be_searched_for()
        {
            ServeDifferencing("vdi");
            string output = _local.File("out.raw");
            var e = Assert.Throws<ImageChainException>(() => ConvertOperation.Run(_nginx.Url("diff/child.vdi"), output, new ConvertOptions { TargetFormat = Fmt.Raw }));
            Assert.Contains("names its parent only by UUID", e.Message);
            Assert.Contains("cannot be listed", e.Message);
            Assert.False(File.Exists(output));
        }

        /// <summary>A base with data and a child with more, both made by the engine (qemu-img creates no VHD, VHDX or VDI child), in the served folder diff/.</summary>
        private string ServeDifferencing(string name)
        {
            DiskFormat format = DiskFormat.Parse(name);
            Directory.CreateDirectory(_nginx.File("diff"));
            string basePath = _nginx.File("diff/base." + name);
            CreateOperation.Create(basePath, format, new CreateRequest { Size = 8 * MiB });
            using (var chain = ImageChain.Open(basePath, new ChainOptions { Writable = true }))
            {
                chain.Top.Write(0, TestData.Pattern(3 * MiB, 7));
            }

            string child = _nginx.File("diff/child." + name);
            CreateOperation.Create(child, format, new CreateRequest { Backing = new BackingReference("base." + name, format) });
            // 4 KiB-aligned: libvhdi reads a VHD child's sectors by 4 KiB page, so a page the child holds
            // only part of reads wrong there (the engine follows the per-sector bitmap).
            using (var chain = ImageChain.Open(child, new ChainOptions { Writable = true }))
            {
                chain.Top.Write(MiB + 4096, TestData.Pattern(700 * 1024, 8));
            }

            return child;
        }

        [Theory]
        [InlineData("vmdk", "monolithicSparse")]
        [InlineData("vmdk", "streamOptimized")]
        [InlineData("vmdk", "twoGbMaxExtentSparse")]
        [InlineData("vhdx", null)]
        [InlineData("vpc", null)]
        [InlineData("vdi", null)]
        public void Other_formats_convert_from_a_url_to_what_qemu_img_reads_from_the_file(string format, string subformat)
        {
            string source = ServeQcow2("source.qcow2");
            string path = _nginx.File("disk." + format);
            var args = new System.Collections.Generic.List<string> { "convert", "-f", "qcow2", "-O", format };
            if (subformat != null)
            {
                args.AddRange(new[] { "-o", "subformat=" + subformat });
            }

            args.AddRange(new[] { source, path });
            Qemu.Img(args.ToArray());

            string output = ConvertToLocal(_nginx.Url("disk." + format), Fmt.Qcow2);

            var compare = Qemu.Compare(path, format, output, "qcow2");
            Assert.True(compare.Identical, compare.Output);
        }

        [Fact]
        public void A_qcow2_with_an_external_data_file_reads_the_data_file_beside_its_url()
        {
            string path = _nginx.File("external.qcow2");
            Qemu.Run("qemu-img", new[] { "create", "-q", "-f", "qcow2", "-o", "data_file=external.data", path, "8M" }, expectSuccess: true, workingDirectory: _nginx.Root);
            Qemu.Run("qemu-io", new[] { "-f", "qcow2", "-c", "write -P 0x66 1M 1M", path }, expectSuccess: true, workingDirectory: _nginx.Root);

            string output = ConvertToLocal(_nginx.Url("external.qcow2"));

            Assert.NotEmpty(_nginx.Requests("/external.data"));
            var r = Qemu.Run("qemu-img", new[] { "compare", "-f", "qcow2", "-F", "raw", path, output }, workingDirectory: _nginx.Root);
            Assert.True(r.ExitCode == 0, r.Output);
        }

        [Fact]
        public void Get_and_map_of_a_url_report_what_qemu_img_reports_of_the_file()
        {
            string path = ServeQcow2("info.qcow2");
            string url = _nginx.Url("info.qcow2");

            VDiskInfo info = ImageInspector.Get(url);
            using (JsonDocument expected = Qemu.Info(path, "qcow2"))
            {
                Assert.Equal(expected.RootElement.GetProperty("virtual-size").GetInt64(), info.Size);
                Assert.Equal(expected.RootElement.GetProperty("format").GetString(), info.Format);
                Assert.Equal(expected.RootElement.GetProperty("cluster-size").GetInt64(), info.ClusterSize);
            }

            Assert.Equal(url, info.Path);
            var actual = MapOperation.Run(url);
            using JsonDocument map = JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", "qcow2", path));
            Assert.Equal(map.RootElement.GetArrayLength(), actual.Count);
            int i = 0;
            foreach (JsonElement entry in map.RootElement.EnumerateArray())
            {
                Assert.Equal(entry.GetProperty("start").GetInt64(), actual[i].Start);
                Assert.Equal(entry.GetProperty("length").GetInt64(), actual[i].Length);
                Assert.Equal(entry.GetProperty("zero").GetBoolean(), actual[i].Zero);
                Assert.Equal(entry.GetProperty("data").GetBoolean(), actual[i].Data);
                Assert.Equal(entry.TryGetProperty("offset", out JsonElement offset) ? offset.GetInt64() : (long?)null, actual[i].Offset);
                i++;
            }
        }

        [Fact]
        public void A_sequential_reader_gets_the_blocks_ahead_fetched_before_it_asks()
        {
            System.IO.File.WriteAllBytes(_nginx.File("seq.raw"), TestData.Pattern(24 * MiB, 5));
            using HostFile file = HostFile.Open(_nginx.Url("seq.raw"), HostAccess.Read);
            var buffer = new byte[64 * 1024];
            file.ReadAt(0, buffer);
            file.ReadAt(MiB, buffer);

            // Reading block 1 after block 0 is sequential: blocks 2 to 1 + ReadAheadBlocks are fetched ahead.
            long[] expected = Enumerable.Range(0, 2 + HttpSource.ReadAheadBlocks).Select(b => (long)b * HttpSource.BlockSize).ToArray();
            Assert.True(SpinWait.SpinUntil(() => _nginx.Requests("/seq.raw").Count >= expected.Length, 10000));
            Thread.Sleep(200);
            Assert.Equal(expected, _nginx.Requests("/seq.raw").Select(r => r.RangeStart).OrderBy(s => s).ToArray());
        }

        [Fact]
        public void Random_reads_fetch_only_the_blocks_they_touch_and_a_block_once()
        {
            byte[] content = TestData.Pattern(24 * MiB, 6);
            System.IO.File.WriteAllBytes(_nginx.File("random.raw"), content);
            using HostFile file = HostFile.Open(_nginx.Url("random.raw"), HostAccess.Read);
            var buffer = new byte[4096];
            foreach (long offset in new long[] { 20L * MiB + 5, 9L * MiB, 20L * MiB + 4096, 15L * MiB - 100 })
            {
                Assert.Equal(buffer.Length, file.ReadAt(offset, buffer));
                Assert.Equal(content.AsSpan((int)offset, buffer.Length).ToArray(), buffer);
            }

            // Block 0 at open, then blocks 20, 9 and 14+15 (the last read straddles them); 20 is read once.
            Assert.Equal(new long[] { 0, 9, 14, 15, 20 }.Select(b => b * HttpSource.BlockSize), _nginx.Requests("/random.raw").Select(r => r.RangeStart).OrderBy(s => s));
        }

        [Fact]
        public void A_server_that_ignores_ranges_is_refused_by_name()
        {
            ServeQcow2("noranges/disk.qcow2");
            var e = Assert.Throws<ImageNotSupportedException>(() => ImageInspector.Get(_nginx.Url("noranges/disk.qcow2")));
            Assert.Contains(_nginx.Url("noranges/disk.qcow2"), e.Message);
            Assert.Contains("ignores range requests", e.Message);
            Assert.Contains("HTTP 200", e.Message);
        }

        [Fact]
        public void A_missing_file_is_not_found_with_the_url_and_the_status()
        {
            var e = Assert.Throws<ImageRemoteException>(() => ImageInspector.Get(_nginx.Url("nothing-here.qcow2")));
            Assert.Equal(RemoteFailure.NotFound, e.Failure);
            Assert.Equal(404, e.StatusCode);
            Assert.Contains(_nginx.Url("nothing-here.qcow2"), e.Message);
            Assert.Contains("HTTP 404", e.Message);
            Assert.Equal("PathNotFound", e.ErrorId);
        }

        [Fact]
        public void A_forbidden_file_is_access_denied()
        {
            ServeQcow2("forbidden/disk.qcow2");
            var e = Assert.Throws<ImageRemoteException>(() => ImageInspector.Get(_nginx.Url("forbidden/disk.qcow2")));
            Assert.Equal(403, e.StatusCode);
            Assert.Contains("HTTP 403", e.Message);
            Assert.Equal("AccessDenied", e.ErrorId);
        }

        [Fact]
        public void Basic_auth_needs_the_right_credential_and_the_password_never_shows()
        {
            string path = ServeQcow2("private/disk.qcow2");
            string url = _nginx.Url("private/disk.qcow2");

            var without = Assert.Throws<ImageRemoteException>(() => ImageInspector.Get(url));
            Assert.Equal(401, without.StatusCode);
            Assert.Contains("asks for a credential", without.Message);

            ImageRemoteException wrong;
            using (TransportOptions.Use(new TransportOptions { Credential = new NetworkCredential(Nginx.User, "wrong-" + Nginx.Password) }))
            {
                wrong = Assert.Throws<ImageRemoteException>(() => ImageInspector.Get(url));
            }

            Assert.Equal(401, wrong.StatusCode);
            Assert.Contains("refused the credential", wrong.Message);
            Assert.DoesNotContain(Nginx.Password, wrong.ToString());

            using (TransportOptions.Use(new TransportOptions { Credential = new NetworkCredential(Nginx.User, Nginx.Password) }))
            {
                string output = ConvertToLocal(url);
                var compare = Qemu.Compare(path, "qcow2", output, "raw");
                Assert.True(compare.Identical, compare.Output);
            }
        }

        [Fact]
        public void A_url_with_a_password_in_it_is_refused_without_showing_the_password()
        {
            string url = $"http://{Nginx.User}:{Nginx.Password}@127.0.0.1:{_nginx.Port}/disk.qcow2";
            var e = Assert.Throws<ImageOptionException>(() => HostFile.Open(url, HostAccess.Read));
            Assert.DoesNotContain(Nginx.Password, e.ToString());
        }

        [Fact]
        public void A_self_signed_certificate_is_refused_unless_the_check_is_skipped()
        {
            string path = ServeQcow2("tls.qcow2");
            string url = _nginx.TlsUrl("tls.qcow2");

            var e = Assert.Throws<ImageRemoteException>(() => ImageInspector.Get(url));
            Assert.Equal(RemoteFailure.CertificateNotTrusted, e.Failure);
            Assert.Contains(url, e.Message);

            using (TransportOptions.Use(new TransportOptions { SkipCertificateCheck = true }))
            {
                string output = ConvertToLocal(url);
                var compare = Qemu.Compare(path, "qcow2", output, "raw");
                Assert.True(compare.Identical, compare.Output);
            }
        }

        [Fact]
        public void A_refused_connection_is_a_connection_error_naming_the_url()
        {
            string url = $"http://127.0.0.1:{Nginx.FreePort()}/disk.qcow2";
            var e = Assert.Throws<ImageRemoteException>(() => ImageInspector.Get(url));
            Assert.Equal(RemoteFailure.Unreachable, e.Failure);
            Assert.Contains(url, e.Message);
            Assert.Equal("ConnectionFailed", e.ErrorId);
        }

        [Fact]
        public void A_file_replaced_on_the_server_mid_read_is_an_error_not_mixed_content()
        {
            string path = _nginx.File("changing.raw");
            System.IO.File.WriteAllBytes(path, TestData.Pattern(8 * MiB, 1));
            using HostFile file = HostFile.Open(_nginx.Url("changing.raw"), HostAccess.Read);

            System.IO.File.WriteAllBytes(path, TestData.Pattern(8 * MiB, 2));
            System.IO.File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(5));

            var e = Assert.Throws<ImageRemoteException>(() => file.ReadAt(6L * MiB, new byte[4096]));
            Assert.Contains("changed on the server", e.Message);
            Assert.Contains(_nginx.Url("changing.raw"), e.Message);
        }

        [Fact]
        public void An_http_location_cannot_be_written_or_created()
        {
            ServeQcow2("ro.qcow2");
            Assert.Throws<ImageNotSupportedException>(() => HostFile.Open(_nginx.Url("ro.qcow2"), HostAccess.ReadWrite));
            Assert.Throws<ImageNotSupportedException>(() => HostFile.Create(_nginx.Url("new.qcow2"), overwrite: false));
        }

        [Fact]
        public void An_empty_file_has_length_zero()
        {
            System.IO.File.WriteAllBytes(_nginx.File("empty.raw"), Array.Empty<byte>());
            using HostFile file = HostFile.Open(_nginx.Url("empty.raw"), HostAccess.Read);
            Assert.Equal(0, file.Length);
            Assert.Equal(0, file.ReadAt(0, new byte[16]));
        }

        [Fact]
        public void A_url_converted_into_a_folder_is_named_after_its_last_segment_and_needs_a_destination()
        {
            string url = _nginx.Url("images/disk.qcow2");
            Assert.Equal(Path.Combine(_local.Path, "disk.vhdx"), PathPlanner.ConvertDestination(url, _local.Path + "/", Fmt.Vhdx, out _));
            var e = Assert.Throws<ImageOptionException>(() => PathPlanner.ConvertDestination(url, null, Fmt.Vhdx, out _));
            Assert.Contains("destination is required", e.Message);
        }

        [Fact]
        public void A_remote_source_is_never_deleted()
        {
            ServeQcow2("keep.qcow2");
            var e = Assert.Throws<ImageOptionException>(() => ConvertOperation.Run(_nginx.Url("keep.qcow2"), _local.File("out.raw"), new ConvertOptions { DeleteSource = true }));
            Assert.Contains("cannot be deleted", e.Message);
            Assert.True(System.IO.File.Exists(_nginx.File("keep.qcow2")));
        }
    }
}
