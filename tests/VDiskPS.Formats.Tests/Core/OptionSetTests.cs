using System.Collections;
using Xunit;

namespace VDiskPS.Formats.Tests.Core
{
    public class OptionSetTests
    {
        [Fact]
        public void ParsesQemuStyleKeyValueLists()
        {
            var set = OptionSet.Parse("cluster_size=64k,lazy_refcounts=on,compat=1.1");
            Assert.Equal(65536, set.GetSize("cluster_size"));
            Assert.True(set.GetBool("lazy_refcounts"));
            Assert.Equal("1.1", set.GetChoice("compat", "0.10", "1.1"));
        }

        [Fact]
        public void DoubledCommaIsALiteralComma()
        {
            var set = OptionSet.Parse("backing_file=a,,b.qcow2,size=1G");
            Assert.Equal("a,b.qcow2", set.GetString("backing_file"));
        }

        [Fact]
        public void BareKeyMeansOn()
        {
            Assert.True(OptionSet.Parse("extended_l2").GetBool("extended_l2"));
        }

        [Fact]
        public void HashtableKeysAreNormalised()
        {
            var set = new OptionSet(new Hashtable { ["Cluster-Size"] = 65536, ["lazy_refcounts"] = true });
            Assert.Equal(65536, set.GetSize("cluster_size"));
            Assert.True(set.GetBool("lazy_refcounts"));
        }

        [Fact]
        public void UnknownKeysAreRejectedByName()
        {
            var set = OptionSet.Parse("cluster_size=64k,clustr_size=1");
            set.GetSize("cluster_size");
            var e = Assert.Throws<ImageOptionException>(() => set.RejectUnknown("qcow2", new[] { "cluster_size" }));
            Assert.Equal("clustr_size", e.Field);
            Assert.Contains("'clustr_size'", e.Message);
            Assert.Contains("cluster_size", e.Message);
        }

        [Fact]
        public void ConflictingDuplicateIsRefused()
        {
            Assert.Throws<ImageOptionException>(() => OptionSet.Parse("compat=0.10,compat=1.1"));
        }

        [Fact]
        public void BadBooleanNamesTheOption()
        {
            var e = Assert.Throws<ImageOptionException>(() => OptionSet.Parse("lazy_refcounts=maybe").GetBool("lazy_refcounts"));
            Assert.Equal("lazy_refcounts", e.Field);
        }

        [Fact]
        public void ChoiceOutsideTheListIsRefusedListingTheChoices()
        {
            var e = Assert.Throws<ImageOptionException>(() => OptionSet.Parse("preallocation=some").GetPreallocation());
            Assert.Contains("off", e.Message);
            Assert.Contains("full", e.Message);
        }
    }
}
