namespace VDiskPS
{
    /// <summary>Parameter-set names shared by the cmdlets.</summary>
    internal static class ParameterSets
    {
        public const string Path = "Path";
        public const string LiteralPath = "LiteralPath";
        public const string Size = "Size";
    }

    /// <summary>The -Format values, for ValidateSet (tab completion) on every cmdlet.</summary>
    internal static class FormatNames
    {
        public const string Raw = "raw";
        public const string Qcow2 = "qcow2";
        public const string Vmdk = "vmdk";
        public const string Vhd = "vhd";
        public const string Vhdx = "vhdx";
        public const string Vdi = "vdi";
    }
}
