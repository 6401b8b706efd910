using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VDiskPS.Formats.Compression;
using VDiskPS.Formats.Http;
using VDiskPS.Formats.Vmdk;
using Xunit;

namespace VDiskPS.Formats.Tests.Http
{
    /// <summary>
    /// Images streamed from a server that ignores range requests (nginx with max_ranges 0 answers a
    /// range with the whole file): raw and streamOptimized VMDK are read front to back from the one
    /// answer, judged by qemu-img compare against the originals, and nginx's access log shows the one
    /// GET; every other format is refused at opening; an image not laid out front to back fails by name
    /// and leaves nothing.
    /// </summary>
    public sealed class HttpStreamTests : IDisposable
    {
        private const int MiB = 1 << 20;
        private readonly Nginx _nginx = new Nginx();
        private readonly TempDir _local = new TempDir();
        private readonly TempDir _scratch = new TempDir();

        public void Dispose()
        {
            _nginx.Dispose();
            _local.Dispose();
            _scratch.Dispose();
        }

        /// <summary>A raw disk with data scattered over <paramref name="size"/> and zeros between, in the scratch folder.</summary>
        private string MakeRaw(string name, bool small = false)
        {
            string path = _scratch.File(name);
            Qemu.Img("create", "-q", "-f", "raw", path, small ? "8M" : "40M");
            Qemu.Io("-f", "raw", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x22 7M 64k", "-c", small ? "write -P 0x33 7300k 200k" : "write -P 0x33 12345k 2M", "-c", small ? "write -P 0x44 8100k 92k" : "write -P 0x44 30M 5M", path);
            return path;
        }

        private string ServeQemuStream(string name)
        {
            string served = _nginx.File("noranges/" + name);
            Qemu.Img("convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", MakeRaw(name + ".raw"), served);
            return served;
        }

        private string ConvertToLocal(string url, DiskFormat target, CancellationToken cancel = default, IProgress<OperationProgress> progress = null)
        {
            string output = _local.File("out." + target.ToQemuName());
            ConvertOperation.Run(url, output, new ConvertOptions { TargetFormat = target }, progress, cancel);
            return output;
        }

        private void AssertOneGet(string uri)
        {
            var requests = LoggedRequests(uri);
            Assert.Single(requests);
            Assert.Equal("GET", requests[0].Method);
            Assert.Equal(200, requests[0].Status);
        }

        [Theory]
        [InlineData("raw")]
        [InlineData("qcow2")]
        public void A_raw_image_is_streamed_in_one_get_and_converts_equal(string target)
        {
            string served = _nginx.File("noranges/disk.raw");
            File.Copy(MakeRaw("disk.raw"), served);

            string output = ConvertToLocal(_nginx.Url("noranges/disk.raw"), target == "raw" ? Fmt.Raw : Fmt.Qcow2);

            var compare = Qemu.Compare(served, "raw", output, target);
            Assert.True(compare.Identical, compare.Output);
            AssertOneGet("/noranges/disk.raw");
        }

        [Theory]
        [InlineData("raw")]
        [InlineData("qcow2")]
        public void A_streamOptimized_vmdk_made_by_qemu_img_is_streamed_in_one_get_and_converts_equal(string target)
        {
            string served = ServeQemuStream("disk.vmdk");

            string output = ConvertToLocal(_nginx.Url("noranges/disk.vmdk"), target == "raw" ? Fmt.Raw : Fmt.Qcow2);

            var compare = Qemu.Compare(served, "vmdk", output, target);
            Assert.True(compare.Identical, compare.Output);
            AssertOneGet("/noranges/disk.vmdk");
        }

        [Fact]
        public void A_streamOptimized_vmdk_written_by_this_module_is_streamed_and_converts_equal()
        {
            string served = _nginx.File("noranges/own.vmdk");
            ConvertOperation.Run(MakeRaw("own.raw"), served, new ConvertOptions { TargetFormat = Fmt.Vmdk, Target = new CreateRequest { Subformat = "streamOptimized" } });

            string output = ConvertToLocal(_nginx.Url("noranges/own.vmdk"), Fmt.Qcow2);

            var compare = Qemu.Compare(served, "vmdk", output, "qcow2");
            Assert.True(compare.Identical, compare.Output);
            AssertOneGet("/noranges/own.vmdk");
        }

        [Fact]
        public void Get_describes_a_streamed_vmdk_from_its_header_alone()
        {
            // Incompressible, so that the stream is far larger than what socket buffers take in.
            string raw = _scratch.File("info.raw");
            File.WriteAllBytes(raw, TestData.Pattern(48 * MiB, 12));
            string served = _nginx.File("noranges/info.vmdk");
            Qemu.Img("convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, served);

            VDiskInfo info = ImageInspector.Get(_nginx.Url("noranges/info.vmdk"));

            Assert.Equal("vmdk", info.Format);
            Assert.Equal(Qemu.Info(served).RootElement.GetProperty("virtual-size").GetInt64(), info.Size);
            Assert.Equal("streamOptimized", info.Subformat);
            var requests = LoggedRequests("/noranges/info.vmdk");
            Assert.Single(requests);
            Assert.True(requests[0].Bytes < new FileInfo(served).Length, $"nginx sent {requests[0].Bytes} of {new FileInfo(served).Length} bytes: Get read the whole stream");
        }

        [Fact]
        public void A_streamed_vmdk_is_not_checked_by_a_stream_it_cannot_finish()
        {
            ServeQemuStream("check.vmdk");
            using ImageLayer layer = FormatRegistry.Default.Open(_nginx.Url("noranges/check.vmdk"), null, new OpenOptions());

            var e = Assert.Throws<ImageNotSupportedException>(() => ((ICheckableLayer)layer).Check(RepairMode.None));

            Assert.Contains(_nginx.Url("noranges/check.vmdk"), e.Message);
            Assert.Contains("cannot be checked", e.Message);
        }

        [Fact]
        public void A_descriptor_naming_a_streamOptimized_extent_beside_it_streams_both_and_converts_equal()
        {
            // The extent is qemu-img's streamOptimized file; the descriptor beside it names it as a SPARSE extent (as a
            // split sparse disk, the text descriptor form qemu-img opens).
            ServeQemuStream("split-s001.vmdk");
            long sectors = new FileInfo(_scratch.File("split-s001.vmdk.raw")).Length / 512;
            string descriptor = _nginx.File("noranges/split.vmdk");
            File.WriteAllText(descriptor, "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\n\n" +
                $"# Extent description\nRW {sectors} SPARSE \"split-s001.vmdk\"\n\n# The Disk Data Base\nddb.virtualHWVersion = \"4\"\n");

            string output = ConvertToLocal(_nginx.Url("noranges/split.vmdk"), Fmt.Qcow2);

            var compare = Qemu.Compare(descriptor, "vmdk", output, "qcow2");
            Assert.True(compare.Identical, compare.Output);
            Assert.True(Qemu.Compare(_scratch.File("split-s001.vmdk.raw"), "raw", output, "qcow2").Identical);
            AssertOneGet("/noranges/split.vmdk");
            AssertOneGet("/noranges/split-s001.vmdk");
        }

        [Fact]
        public void The_map_of_a_streamed_vmdk_is_what_qemu_img_map_gives_of_the_file()
        {
            string served = ServeQemuStream("map.vmdk");

            var map = MapOperation.Run(_nginx.Url("noranges/map.vmdk"));

            using var expected = System.Text.Json.JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", "vmdk", served));
            var qemu = expected.RootElement.EnumerateArray().Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("data").GetBoolean(), e.GetProperty("zero").GetBoolean())).ToList();
            Assert.Equal(qemu, map.Select(e => (e.Start, e.Length, e.Data, e.Zero)).ToList());
            AssertOneGet("/noranges/map.vmdk");
        }

        [Fact]
        public void A_streamed_vmdk_compares_as_qemu_img_compare_finds_it_against_a_local_image()
        {
            string served = ServeQemuStream("cmp.vmdk");
            string same = _scratch.File("cmp.vmdk.raw");
            string changed = _scratch.File("changed.raw");
            File.Copy(same, changed);
            Qemu.Io("-f", "raw", "-c", "write -P 0x99 20M 4k", changed);
            var qemuChanged = Qemu.Compare(served, "vmdk", changed, "raw");
            Assert.False(qemuChanged.Identical);

            VDiskComparison equal = CompareOperation.Run(_nginx.Url("noranges/cmp.vmdk"), same);
            VDiskComparison differs = CompareOperation.Run(_nginx.Url("noranges/cmp.vmdk"), changed);

            Assert.True(equal.Identical, equal.Reason);
            Assert.False(differs.Identical);
            Assert.Equal(20L << 20, differs.FirstMismatchOffset);
            Assert.Contains("offset 20971520", qemuChanged.Output);
        }

        [Fact]
        public void A_streamed_vmdk_measures_as_qemu_img_measure_gives_for_the_file()
        {
            string served = ServeQemuStream("measure.vmdk");

            VDiskMeasurement measured = MeasureOperation.Run(_nginx.Url("noranges/measure.vmdk"), new MeasureOptions { TargetFormat = Fmt.Qcow2 });

            using var expected = System.Text.Json.JsonDocument.Parse(Qemu.Img("measure", "--output=json", "-f", "vmdk", "-O", "qcow2", served));
            Assert.Equal(expected.RootElement.GetProperty("required").GetInt64(), measured.Required);
            Assert.Equal(expected.RootElement.GetProperty("fully-allocated").GetInt64(), measured.FullyAllocated);
        }

        [Theory]
        [InlineData(new[] { 3, 2, 1, 0 }, 3)]
        [InlineData(new[] { 0, 3, 1 }, 3)]
        public void A_streamOptimized_vmdk_with_grains_out_of_order_fails_naming_the_marker_and_leaves_nothing(int[] order, int passed)
        {
            string served = _nginx.File("noranges/unordered.vmdk");
            (byte[] expected, long badMarker, long badLba) = WriteUnorderedStream(served, order);

            // qemu-img reads it by its grain directory, so the image itself is sound.
            string oracle = _scratch.File("expected.raw");
            File.WriteAllBytes(oracle, expected);
            var compare = Qemu.Compare(served, "vmdk", oracle, "raw");
            Assert.True(compare.Identical, compare.Output);

            var e = Assert.Throws<ImageNotSupportedException>(() => ConvertToLocal(_nginx.Url("noranges/unordered.vmdk"), Fmt.Qcow2));

            Assert.Contains(_nginx.Url("noranges/unordered.vmdk"), e.Message);
            Assert.Equal(badMarker, e.Offset);
            Assert.Contains($"offset {badMarker}", e.Message);
            Assert.Contains($"LBA {badLba}", e.Message);
            Assert.Contains($"LBA {passed * 128}", e.Message);
            Assert.Empty(Directory.GetFileSystemEntries(_local.Path));
        }

        /// <summary>
        /// A stream of more grains than the reader remembers (<see cref="StreamReadExtent.KeptGrains"/>):
        /// the last grain reads back, and a read at the start, whose grain position was forgotten, is
        /// refused by its offset rather than read wrong. Engine-only: the stream has no grain directory,
        /// so no outside tool reads it; its content is known from how it was written.
        /// </summary>
        [Fact]
        public void A_stream_of_more_grains_than_are_remembered_refuses_a_read_of_a_forgotten_one_by_offset()
        {
            const int GrainBytes = 64 * 1024;
            int grains = StreamReadExtent.KeptGrains + 64;
            WriteGrainStream(_nginx.File("noranges/many.vmdk"), grains, GrainBytes);
            using ImageLayer layer = FormatRegistry.Default.Open(_nginx.Url("noranges/many.vmdk"), null, new OpenOptions());
            var buffer = new byte[GrainBytes];

            layer.Read((long)(grains - 1) * GrainBytes, buffer);
            Assert.All(buffer, b => Assert.Equal(GrainByte(grains - 1), b));
            var e = Assert.Throws<ImageNotSupportedException>(() => layer.Read(0, buffer));

            Assert.Contains("virtual offset 0 lies behind the grains still known of the stream", e.Message);
            Assert.Contains(_nginx.Url("noranges/many.vmdk"), e.Message);
        }

        private static byte GrainByte(int grain) => (byte)(1 + (grain % 250));

        /// <summary>A streamOptimized VMDK of <paramref name="grains"/> grains, grain i filled with <see cref="GrainByte"/>(i), each behind its marker, then the end-of-stream marker.</summary>
        private void WriteGrainStream(string path, int grains, int grainBytes)
        {
            const int Sector = 512;
            string template = _scratch.File("many-template.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", template, ((long)grains * grainBytes).ToString(System.Globalization.CultureInfo.InvariantCulture));
            byte[] head = File.ReadAllBytes(template);
            SparseHeader header = SparseHeader.Parse(head);
            int overhead = (int)header.Overhead * Sector;
            var compressed = new Dictionary<byte, byte[]>();
            using var output = new FileStream(path, FileMode.Create);
            output.Write(head, 0, overhead);
            for (int grain = 0; grain < grains; grain++)
            {
                byte value = GrainByte(grain);
                if (!compressed.TryGetValue(value, out byte[] data))
                {
                    byte[] plain = new byte[grainBytes];
                    Array.Fill(plain, value);
                    compressed[value] = data = Deflate.CompressZlib(plain);
                }

                var block = new byte[(StreamMarker.GrainHeaderSize + data.Length + Sector - 1) / Sector * Sector];
                StreamMarker.WriteGrainHeader(block, (ulong)grain * (ulong)(grainBytes / Sector), (uint)data.Length);
                data.CopyTo(block, StreamMarker.GrainHeaderSize);
                output.Write(block);
            }

            output.Write(StreamMarker.Metadata(0, StreamMarker.EndOfStream));
        }

        [Theory]
        [InlineData("qcow2")]
        [InlineData("vhdx")]
        [InlineData("vpc")]
        [InlineData("vdi")]
        public void Other_formats_on_a_server_that_ignores_ranges_are_refused_at_opening(string format)
        {
            string name = "disk." + format;
            Qemu.Img("convert", "-q", "-f", "raw", "-O", format, MakeRaw("other.raw", small: true), _nginx.File("noranges/" + name));
            string url = _nginx.Url("noranges/" + name);

            var e = Assert.Throws<ImageNotSupportedException>(() => ConvertToLocal(url, Fmt.Raw));

            Assert.Contains(url, e.Message);
            Assert.Contains("ignores range requests", e.Message);
            Assert.Contains("must support them", e.Message);
            Assert.Equal("NotSupported", e.ErrorId);
            Assert.Empty(Directory.GetFileSystemEntries(_local.Path));
            Assert.Single(LoggedRequests("/noranges/" + name));
        }

        [Fact]
        public void A_monolithic_sparse_vmdk_on_such_a_server_is_refused_at_opening()
        {
            Qemu.Img("convert", "-q", "-f", "raw", "-O", "vmdk", MakeRaw("sparse.raw", small: true), _nginx.File("noranges/sparse.vmdk"));

            var e = Assert.Throws<ImageNotSupportedException>(() => ImageInspector.Get(_nginx.Url("noranges/sparse.vmdk")));

            Assert.Contains("ignores range requests", e.Message);
        }

        [Fact]
        public void The_window_of_a_long_stream_stays_within_its_bound_and_a_read_behind_it_is_refused_by_offset()
        {
            string served = _nginx.File("noranges/long.raw");
            using (var file = File.Create(served))
            {
                file.SetLength(100L * MiB);
                file.Position = 90L * MiB;
                file.Write(TestData.Pattern(MiB, 3));
            }

            using HostFile stream = HostFile.Open(_nginx.Url("noranges/long.raw"), HostAccess.Read);
            var window = Assert.IsType<HttpStreamFile>(stream);
            var buffer = new byte[MiB];
            for (long offset = 0; offset < stream.Length; offset += buffer.Length)
            {
                Assert.Equal(buffer.Length, stream.ReadAt(offset, buffer));
                Assert.True(window.WindowLength <= HttpStreamFile.WindowBytes, $"window of {window.WindowLength} bytes");
            }

            Assert.Equal(TestData.Pattern(MiB, 3), ReadAt(stream, 90L * MiB, MiB));
            Assert.Equal(HttpStreamFile.WindowBytes, window.WindowLength);
            var e = Assert.Throws<ImageNotSupportedException>(() => stream.ReadAt(10L * MiB, buffer));
            Assert.Equal(10L * MiB, e.Offset);
            Assert.Contains(_nginx.Url("noranges/long.raw"), e.Message);
            Assert.Contains("ignores range requests", e.Message);
            Assert.Contains("not laid out to be read front to back", e.Message);
            AssertOneGet("/noranges/long.raw");
        }

        [Fact]
        public void A_read_ahead_reads_forward_and_earlier_reads_inside_the_window_still_hit_it()
        {
            byte[] content = TestData.Pattern(12 * MiB, 9);
            File.WriteAllBytes(_nginx.File("noranges/ahead.raw"), content);
            using HostFile stream = HostFile.Open(_nginx.Url("noranges/ahead.raw"), HostAccess.Read);

            Assert.Equal(content.AsSpan(8 * MiB, 4096).ToArray(), ReadAt(stream, 8 * MiB, 4096));
            Assert.Equal(content.AsSpan(100, 5000).ToArray(), ReadAt(stream, 100, 5000));
            Assert.Equal(content.AsSpan(12 * MiB - 10, 10).ToArray(), ReadAt(stream, 12 * MiB - 10, 10));
            Assert.Equal(content.AsSpan(3 * MiB, 2 * MiB).ToArray(), ReadAt(stream, 3 * MiB, 2 * MiB));
            AssertOneGet("/noranges/ahead.raw");
        }

        [Fact]
        public void Cancelling_mid_stream_stops_the_convert_and_leaves_nothing()
        {
            string served = ServeQemuStream("cancel.vmdk");
            using var cancel = new CancellationTokenSource();
            var progress = new SyncProgress(p =>
            {
                if (p.BytesDone > 0)
                {
                    cancel.Cancel();
                }
            });

            Assert.ThrowsAny<OperationCanceledException>(() => ConvertToLocal(_nginx.Url("noranges/cancel.vmdk"), Fmt.Qcow2, cancel.Token, progress));

            Assert.True(cancel.IsCancellationRequested);
            Assert.Empty(Directory.GetFileSystemEntries(_local.Path));
        }

        [Fact]
        public void A_stream_cut_short_fails_naming_the_url_and_the_offset_and_leaves_nothing()
        {
            byte[] content = TestData.Pattern(8 * MiB, 4);
            using var server = new FaultyServer(content, (n, from) => Fault.WholeFileCutShort);
            string url = server.Url("cut.raw");

            var e = Assert.Throws<ImageRemoteException>(() => ConvertToLocal(url, Fmt.Raw));

            Assert.Contains(url, e.Message);
            Assert.Contains($"offset {content.Length / 10}", e.Message);
            Assert.Contains("cannot be resumed", e.Message);
            Assert.Equal(1, server.Requests);
            Assert.Empty(Directory.GetFileSystemEntries(_local.Path));
        }

        [Fact]
        public void A_whole_file_answer_without_a_length_is_refused_by_name()
        {
            using var server = new FaultyServer(TestData.Pattern(MiB, 5), (n, from) => Fault.WholeFileUnsized);
            string url = server.Url("unsized.raw");

            var e = Assert.Throws<ImageNotSupportedException>(() => HostFile.Open(url, HostAccess.Read).Dispose());

            Assert.Contains(url, e.Message);
            Assert.Contains("Content-Length", e.Message);
            Assert.Contains("ignores range requests", e.Message);
        }

        /// <summary>The requests nginx logged for <paramref name="uri"/>; a stream given up is logged when nginx sees the connection close, a moment later.</summary>
        private IReadOnlyList<LoggedRequest> LoggedRequests(string uri)
        {
            var requests = _nginx.Requests(uri);
            for (int wait = 0; requests.Count == 0 && wait < 100; wait++)
            {
                Thread.Sleep(50);
                requests = _nginx.Requests(uri);
            }

            Thread.Sleep(200);
            return _nginx.Requests(uri);
        }

        private static byte[] ReadAt(HostFile file, long offset, int count)
        {
            var buffer = new byte[count];
            Assert.Equal(count, file.ReadAt(offset, buffer));
            return buffer;
        }

        /// <summary>
        /// A 1 MiB streamOptimized VMDK whose grains (64 KiB, patterned) lie in the file in the given
        /// order, with a valid grain table, directory, footer and end-of-stream marker; the header and
        /// descriptor are qemu-img's. Returns the disk's content and the marker offset and LBA of the
        /// first grain below one before it.
        /// </summary>
        private (byte[] Content, long BadMarker, long BadLba) WriteUnorderedStream(string path, int[] order)
        {
            const int Sector = 512;
            const int GrainBytes = 64 * 1024;
            string template = _scratch.File("template.vmdk");
            Qemu.Img("create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", template, "1M");
            byte[] head = File.ReadAllBytes(template);
            // The directory at the end, behind the footer, as VMware writes it (qemu-img fills one in the overhead).
            SparseHeader header = SparseHeader.Parse(head);
            header.Flags &= ~SparseHeader.FlagRedundantGrainTable;
            header.RedundantDirectoryOffset = 0;
            header.DirectoryOffset = SparseHeader.GrainDirectoryAtEnd;
            header.ToBytes().CopyTo(head, 0);
            int overhead = (int)header.Overhead * Sector;

            var content = new byte[MiB];
            var output = new MemoryStream();
            output.Write(head, 0, overhead);
            var table = new uint[512];
            long badMarker = -1;
            long badLba = -1;
            int highest = -1;
            foreach (int grain in order)
            {
                byte[] data = TestData.Pattern(GrainBytes, 20 + grain);
                data.CopyTo(content, grain * GrainBytes);
                byte[] compressed = Deflate.CompressZlib(data);
                long marker = output.Position;
                if (grain < highest && badMarker < 0)
                {
                    badMarker = marker;
                    badLba = grain * 128L;
                }

                highest = Math.Max(highest, grain);
                table[grain] = (uint)(marker / Sector);
                var block = new byte[(StreamMarker.GrainHeaderSize + compressed.Length + Sector - 1) / Sector * Sector];
                StreamMarker.WriteGrainHeader(block, (ulong)(grain * 128L), (uint)compressed.Length);
                compressed.CopyTo(block, StreamMarker.GrainHeaderSize);
                output.Write(block);
            }

            output.Write(StreamMarker.Metadata(4, StreamMarker.GrainTable));
            long tableSector = output.Position / Sector;
            output.Write(table.SelectMany(BitConverter.GetBytes).ToArray());
            output.Write(StreamMarker.Metadata(1, StreamMarker.GrainDirectory));
            long directorySector = output.Position / Sector;
            var directory = new byte[Sector];
            BitConverter.GetBytes((uint)tableSector).CopyTo(directory, 0);
            output.Write(directory);
            output.Write(StreamMarker.Metadata(1, StreamMarker.Footer));
            SparseHeader footer = header.Clone();
            footer.DirectoryOffset = (ulong)directorySector;
            output.Write(footer.ToBytes());
            output.Write(StreamMarker.Metadata(0, StreamMarker.EndOfStream));
            File.WriteAllBytes(path, output.ToArray());
            return (content, badMarker, badLba);
        }

        /// <summary>Reports on the reporting thread, not posted to a synchronization context.</summary>
        private sealed class SyncProgress : IProgress<OperationProgress>
        {
            private readonly Action<OperationProgress> _report;

            public SyncProgress(Action<OperationProgress> report) => _report = report;

            public void Report(OperationProgress value) => _report(value);
        }
    }
}
