namespace VDiskPS.Formats
{
    /// <summary>Progress of a long operation: phase and bytes, for Write-Progress.</summary>
    public readonly struct OperationProgress
    {
        public OperationProgress(string phase, long bytesDone, long bytesTotal)
        {
            Phase = phase;
            BytesDone = bytesDone;
            BytesTotal = bytesTotal;
        }

        public string Phase { get; }

        public long BytesDone { get; }

        public long BytesTotal { get; }

        public int Percent => BytesTotal <= 0 ? 100 : (int)System.Math.Min(100, BytesDone * 100 / BytesTotal);
    }
}
