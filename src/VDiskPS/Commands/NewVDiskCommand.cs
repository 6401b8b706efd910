using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>New-VDisk: create an image (qemu-img create, New-VHD).</summary>
    [Cmdlet(VerbsCommon.New, "VDisk", DefaultParameterSetName = ParameterSets.Size, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskInfo))]
    public sealed class NewVDiskCommand : VDiskCmdlet
    {
        private const string DifferencingSet = "Differencing";

        /// <summary>Path of the image file(s) to create, relative to the current PowerShell location. The extension chooses the format when -Format is omitted (Get-VDiskFormat shows each format's extensions: .qcow2, .vhdx, .avhdx, ...). A .vhds (VHD Set) is refused as not supported.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName")]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; }

        /// <summary>Virtual size: 20GB, or "20G", "512M". Binds by property name, so Import-Csv rows with Path and SizeBytes columns create one image each.</summary>
        [Parameter(Position = 1, ParameterSetName = ParameterSets.Size, ValueFromPipelineByPropertyName = true)]
        [Parameter(ParameterSetName = DifferencingSet, ValueFromPipelineByPropertyName = true)]
        [Alias("Size")]
        [SizeTransformation]
        public ulong SizeBytes { get; set; }

        /// <summary>The image format: one this build writes (Get-VDiskFormat -Writable lists them). Default: from the file extension.</summary>
        [Parameter]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>Fixed (all space allocated up front), Dynamic (grows as written) or Differencing (an overlay of -ParentPath). Default: Dynamic, or Differencing with -ParentPath.</summary>
        [Parameter]
        public DiskType Type { get; set; }

        /// <summary>Create a fixed image (New-VHD -Fixed): the same as -Type Fixed.</summary>
        [Parameter(ParameterSetName = ParameterSets.Size)]
        public SwitchParameter Fixed { get; set; }

        /// <summary>Create a dynamic image (New-VHD -Dynamic): the same as -Type Dynamic.</summary>
        [Parameter(ParameterSetName = ParameterSets.Size)]
        public SwitchParameter Dynamic { get; set; }

        /// <summary>Create a differencing image of -ParentPath (New-VHD -Differencing): the same as -Type Differencing; with it the parent may be given as the second positional argument.</summary>
        [Parameter(Mandatory = true, ParameterSetName = DifferencingSet)]
        public SwitchParameter Differencing { get; set; }

        /// <summary>VMDK create type (monolithicSparse, streamOptimized, vmfsThin, ...).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SubformatCompleter))]
        public string Subformat { get; set; }

        /// <summary>Create a differencing image (overlay) of this parent. A relative path resolves against the current PowerShell location (as New-VHD does) and is recorded relative to the new image's folder, so the two can be moved together; separators are recorded in the form the format expects ('/' for qcow2 and VMDK, the VHD/VHDX locators' own relative and absolute forms).</summary>
        [Parameter(ParameterSetName = ParameterSets.Size)]
        [Parameter(Mandatory = true, Position = 1, ParameterSetName = DifferencingSet)]
        [Alias("BackingFile")]
        [ValidateNotNullOrEmpty]
        public string ParentPath { get; set; }

        /// <summary>The parent's format, recorded in the new image. Default: probed from the parent and recorded.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string ParentFormat { get; set; }

        /// <summary>Record the parent without opening it (qemu-img create -u).</summary>
        [Parameter]
        public SwitchParameter Unsafe { get; set; }

        /// <summary>Allocation unit: qcow2 cluster, VMDK grain, VHD/VHDX/VDI block size. Accepts 64KB or "64k". A new VHDX without a parent gets 32 MiB blocks, as New-VHD makes them (qemu-img picks 8 to 64 MiB by size); a child takes its parent's.</summary>
        [Parameter]
        [Alias("BlockSizeBytes")]
        [SizeTransformation]
        public ulong ClusterSize { get; set; }

        /// <summary>Logical sector size reported to the guest (VHDX): 512 or 4096.</summary>
        [Parameter]
        [ValidateSet("512", "4096")]
        public uint LogicalSectorSizeBytes { get; set; }

        /// <summary>Physical sector size reported to the guest (VHDX): 512 or 4096. A new VHDX without a parent reports 4096, as New-VHD makes it (qemu-img writes 512); a child takes its parent's.</summary>
        [Parameter]
        [ValidateSet("512", "4096")]
        public uint PhysicalSectorSizeBytes { get; set; }

        /// <summary>Off (sparse), Metadata (tables only), Falloc (reserve blocks where the host can) or Full (write zeros: real blocks on every host); too little space is VDisk.IOError.</summary>
        [Parameter]
        public Preallocation Preallocation { get; set; }

        /// <summary>qcow2 compression type for compressed clusters: Zlib (default) or Zstd.</summary>
        [Parameter]
        public CompressionType CompressionType { get; set; }

        /// <summary>Fill the new image from this image (New-VHD -SourceDisk).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string SourcePath { get; set; }

        /// <summary>Encrypt the new image: luks (a LUKS1 container, or qcow2 with encrypt.format=luks; aes-xts-plain64, PBKDF2-SHA256). Needs -Password.</summary>
        [Parameter]
        [ValidateSet("luks", IgnoreCase = true)]
        public string Encryption { get; set; }

        /// <summary>Format options: a hashtable or "cluster_size=64k,lazy_refcounts=on".</summary>
        [Parameter]
        [ArgumentCompleter(typeof(OptionKeyCompleter))]
        public object Option { get; set; }

        /// <summary>Overwrite an existing file.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        /// <summary>The password of an encrypted image (LUKS, qcow2 with LUKS or legacy AES encryption), as a SecureString: Read-Host -AsSecureString. Never written to a log, verbose output or an error.</summary>
        [Parameter]
        public System.Security.SecureString Password { get; set; }

        protected override System.Security.SecureString ImagePassword => Password;

        protected override void ProcessRecord()
        {
            foreach (string rawPath in Path)
            {
                string path;
                try
                {
                    path = ResolveNewPath(rawPath);
                }
                catch (System.Exception e) when (e is ItemNotFoundException || e is System.Management.Automation.DriveNotFoundException || e is ProviderNotFoundException || e is System.ArgumentException)
                {
                    WriteError(ErrorMessages.Record(ErrorCode.InvalidPath, e, rawPath));
                    continue;
                }

                try
                {
                    DiskType? type = RequestedType();
                    var plan = new NewDiskPlan
                    {
                        Path = path,
                        Size = IsBound(nameof(SizeBytes)) ? (long?)checked((long)SizeBytes) : null,
                        Format = ParseFormat(Format),
                        Type = type,
                        Subformat = Subformat,
                        ParentPath = ParentPathToRecord(path, ParentPath),
                        ParentFormat = ParseFormat(ParentFormat),
                        Unsafe = Unsafe.IsPresent,
                        ClusterSize = IsBound(nameof(ClusterSize)) ? (long?)checked((long)ClusterSize) : null,
                        LogicalSectorSize = IsBound(nameof(LogicalSectorSizeBytes)) ? (int?)LogicalSectorSizeBytes : null,
                        PhysicalSectorSize = IsBound(nameof(PhysicalSectorSizeBytes)) ? (int?)PhysicalSectorSizeBytes : null,
                        Preallocation = IsBound(nameof(Preallocation)) ? (Preallocation?)Preallocation : null,
                        CompressionType = IsBound(nameof(CompressionType)) ? (CompressionType?)CompressionType : null,
                        Encryption = Encryption,
                        Option = Unwrap(Option),
                        Force = Force.IsPresent,
                        SourcePath = string.IsNullOrEmpty(SourcePath) ? null : GetUnresolvedProviderPathFromPSPath(SourcePath),
                        HyperVDefaults = true,
                    };
                    plan.BuildRequest();
                    DiskFormat format = plan.ResolveFormat();
                    string what = plan.SourcePath != null
                        ? $"Create {format.ToName()} image from '{plan.SourcePath}'"
                        : plan.Size.HasValue ? $"Create {format.ToName()} image of {DiskSize.Format(plan.Size.Value)}" : $"Create {format.ToName()} image";
                    if (!ShouldProcess(path, what))
                    {
                        continue;
                    }

                    VDiskInfo info = RunEngine(Activity("New-VDisk", path), (progress, cancel) => plan.Execute(progress, cancel));
                    WriteVerboseOutput(path);
                    foreach (string warning in plan.Warnings)
                    {
                        WriteWarning($"{path}: {warning}");
                    }

                    WriteObject(info);
                }
                catch (ImageException e)
                {
                    WriteImageError(e, path);
                }
                catch (System.OverflowException e)
                {
                    WriteError(ErrorMessages.Record(ErrorCode.InvalidOption, e, path));
                }
                catch (PSArgumentException e)
                {
                    WriteError(new ErrorRecord(e, "VDisk.InvalidOption", ErrorCategory.InvalidArgument, path));
                }
            }
        }

        /// <summary>The disk type from -Type or one of New-VHD's switches -Fixed, -Dynamic, -Differencing; more than one must agree.</summary>
        private DiskType? RequestedType()
        {
            var asked = new System.Collections.Generic.List<DiskType>();
            if (IsBound(nameof(Type)))
            {
                asked.Add(Type);
            }

            if (Fixed)
            {
                asked.Add(DiskType.Fixed);
            }

            if (Dynamic)
            {
                asked.Add(DiskType.Dynamic);
            }

            if (Differencing)
            {
                asked.Add(DiskType.Differencing);
            }

            if (asked.Count == 0)
            {
                return null;
            }

            if (asked.Exists(t => t != asked[0]))
            {
                throw new PSArgumentException($"The disk type is given twice and differently ({string.Join(", ", asked)}); give one of -Type, -Fixed, -Dynamic or -Differencing.");
            }

            return asked[0];
        }
    }
}
