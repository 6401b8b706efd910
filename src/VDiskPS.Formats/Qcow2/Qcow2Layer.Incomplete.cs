namespace VDiskPS.Formats.Qcow2
{
    // While content is rewritten in place (convert into an existing image), the header carries the
    // "corrupt" incompatible bit (qcow2.rst "incompatible_features" bit 1): QEMU then refuses to open the
    // image for writing and qemu-img info reports "corrupt: true" until it is repaired. The dirty bit
    // would not do: QEMU silently rebuilds the refcounts of a dirty image and uses it.
    internal sealed partial class Qcow2Layer : IIncompleteMarkerLayer
    {
        private bool _markedIncomplete;

        public bool MarkIncomplete()
        {
            EnsureWritable();
            lock (_gate)
            {
                if (_header.Version < 3)
                {
                    // A version 2 header has no feature bits.
                    return false;
                }

                // Flagged already (damage QEMU found, or an interrupted rewrite): refused like any write.
                EnsureWritableImage();
                _header.IncompatibleFeatures |= Qcow2Header.IncompatibleCorrupt;
                _markedIncomplete = true;
                WriteHeader();
                _file.Flush();
                return true;
            }
        }

        public void ClearIncomplete()
        {
            Flush();
            lock (_gate)
            {
                _header.IncompatibleFeatures &= ~Qcow2Header.IncompatibleCorrupt;
                _markedIncomplete = false;
                WriteHeader();
                _file.Flush();
            }
        }
    }
}
