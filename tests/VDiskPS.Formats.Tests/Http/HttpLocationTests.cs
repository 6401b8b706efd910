using VDiskPS.Formats.Http;
using Xunit;

namespace VDiskPS.Formats.Tests.Http
{
    // How recorded paths resolve against a URL: qemu's curl driver combines them the same way
    // (relative to the image's URL), but no tool reports the combined URL, so the engine is the oracle.
    public class HttpLocationTests
    {
        [Theory]
        [InlineData("base.qcow2", "http://h:8080/vm/base.qcow2")]
        [InlineData("../gold/base file.qcow2", "http://h:8080/gold/base%20file.qcow2")]
        [InlineData("sub\\base.vmdk", "http://h:8080/vm/sub/base.vmdk")]
        [InlineData("/images/base#1.qcow2", "http://h:8080/images/base%231.qcow2")]
        public void A_recorded_path_resolves_relative_to_the_image_url_each_segment_escaped(string recorded, string expected)
            => Assert.Equal(expected, new BackingReference(recorded, null).Resolve("http://h:8080/vm/top.qcow2"));

        [Theory]
        [InlineData("http://h/disk.qcow2", true)]
        [InlineData("HTTPS://h/disk.qcow2", true)]
        [InlineData("nbd://h/disk", false)]
        public void The_http_transport_claims_http_and_https(string location, bool claimed)
            => Assert.Equal(claimed, new HttpTransport().Claims(location));

        [Fact]
        public void Https_locations_are_the_http_transport_s()
            => Assert.Equal("HTTP", Transports.Find("https://h/disk.qcow2").Name);
    }
}
