using System.Management.Automation;
using VDiskPS.Formats;
using VDiskPS.Formats.Ova;

namespace VDiskPS.Commands
{
    /// <summary>Convert-VDisk: copy an image (chain) into another format (qemu-img convert, Convert-VHD).</summary>
    [Cmdlet(VerbsData.Convert, "VDisk", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskInfo), typeof(VDiskSalvageResult))]
    public sealed class ConvertVDiskCommand : VDiskSourceCmdlet
    {
        /// <summary>Output file or folder; default: beside the source, same name, new extension.</summary>
        [Parameter(Position = 1)]
        [Alias("DestinationPath")]
        [ValidateNotNullOrEmpty]
        public string Destination { get; set; }

        /// <summary>Target format: one this build writes (Get-VDiskFormat -Writable lists them; qemu names such as vpc work too). Default: from the extension of -Destination.</summary>
        [Parameter]
        [ValidateWritableFormat]
        [ArgumentCompleter(typeof(WritableFormatCompleter))]
        public string Format { get; set; }

        /// <summary>The source image's format; probed from the content when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string SourceFormat { get; set; }

        /// <summary>Fixed, Dynamic or Differencing (with -ParentPath) target (VHD, VHDX, VDI); -VHDType is Convert-VHD's name for it. Default: as Convert-VHD, a fixed VHD, VHDX or VDI source gives a fixed VHD, VHDX or VDI target (unless -Subformat, -Preallocation or a subformat option says otherwise); every other conversion gives the target format's default, dynamic.</summary>
        [Parameter]
        [Alias("VHDType")]
        [ValidateSet("Fixed", "Dynamic", "Differencing", IgnoreCase = true)]
        public string Type { get; set; }

        /// <summary>Target subformat: VMDK create type (monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat, streamOptimized, vmfs, vmfsThin).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SubformatCompleter))]
        public string Subformat { get; set; }

        /// <summary>Write compressed clusters (qcow2, streamOptimized VMDK).</summary>
        [Parameter]
        public SwitchParameter Compress { get; set; }

        /// <summary>Compression algorithm with -Compress for qcow2: Zlib (default) or Zstd.</summary>
        [Parameter]
        public CompressionType CompressionType { get; set; }

        /// <summary>Zero runs at least this long stay unallocated; 0 allocates everything (qemu-img -S).</summary>
        [Parameter]
        [SizeTransformation]
        public ulong SparseSize { get; set; }

        /// <summary>Convert the disk as it was in this internal snapshot (id or name).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Snapshot { get; set; }

        /// <summary>Make the output an overlay of this image holding only what differs from it. A relative path resolves against the current PowerShell location and is recorded relative to the output's folder.</summary>
        [Parameter]
        [Alias("BackingFile")]
        [ValidateNotNullOrEmpty]
        public string ParentPath { get; set; }

        /// <summary>Format of -ParentPath; probed when omitted.</summary>
        [Parameter]
        [ValidateReadableFormat]
        [ArgumentCompleter(typeof(ReadableFormatCompleter))]
        public string ParentFormat { get; set; }

        /// <summary>Target allocation unit: qcow2 cluster, VMDK grain, VHD/VHDX/VDI block size. Accepts 64KB or "64k".</summary>
        [Parameter]
        [Alias("BlockSizeBytes")]
        [SizeTransformation]
        public ulong ClusterSize { get; set; }

        /// <summary>Write into an existing destination (qemu-img convert -n).</summary>
        [Parameter]
        public SwitchParameter NoCreate { get; set; }

        /// <summary>With -NoCreate: the destination already reads as zeros.</summary>
        [Parameter]
        public SwitchParameter TargetIsZero { get; set; }

        /// <summary>Preallocation of the target: Off, Metadata, Falloc (reserve blocks where the host can) or Full (write zeros: real blocks on every host).</summary>
        [Parameter]
        public Preallocation Preallocation { get; set; }

        /// <summary>How many reads and compressions run in parallel. Default: the number of processor cores, and for a network source (NBD) up to 8 reads in flight besides, as qemu-img convert keeps; given, it bounds a network source's reads too.</summary>
        [Parameter]
        [ValidateRange(1, 64)]
        public int ThrottleLimit { get; set; }

        /// <summary>Encrypt the new image: luks (a LUKS1 container, or qcow2 with encrypt.format=luks; aes-xts-plain64, PBKDF2-SHA256). Needs -Password.</summary>
        [Parameter]
        [ValidateSet("luks", IgnoreCase = true)]
        public string Encryption { get; set; }

        /// <summary>Target format options as a hashtable (@{cluster_size='64k'}) or a qemu-style string ("cluster_size=64k,lazy_refcounts=on"). Unknown options are refused by name.</summary>
        [Parameter]
        [ArgumentCompleter(typeof(OptionKeyCompleter))]
        public object Option { get; set; }

        /// <summary>Overwrite an existing destination; read a source another process writes.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        /// <summary>Read a source whose parent's identity changed since it was made (VMDK parentCID, VHD parent unique id, VHDX parent_linkage no longer match).</summary>
        [Parameter]
        public SwitchParameter IgnoreIdMismatch { get; set; }

        /// <summary>Delete the source image once the output has been compared with it and found identical (not with -Snapshot or -Force).</summary>
        [Parameter]
        public SwitchParameter DeleteSource { get; set; }

        /// <summary>With an OVA or OVF package as the source: the disk to convert, by its file in the package (disk2.vmdk) or its disk id. Needed when the package holds more than one disk.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Member { get; set; }

        /// <summary>Output a VDiskInfo object for each image written.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        /// <summary>Run the conversions in a background job (as Convert-VHD -AsJob) and output the job at once; Receive-Job returns the VDiskInfo of each image written, Stop-Job cancels (and removes the unfinished output). Confirmation (-Confirm, -WhatIf) is asked before the job starts.</summary>
        [Parameter]
        public SwitchParameter AsJob { get; set; }

        private readonly System.Collections.Generic.List<(string Source, string Destination, DiskFormat Format, ConvertOptions Options)> _jobWork = new System.Collections.Generic.List<(string, string, DiskFormat, ConvertOptions)>();

        /// <summary>Go on past ranges of the source that cannot be read (qemu-img convert --salvage): write zeros there, warn for each, and output a VDiskSalvageResult listing them.</summary>
        [Parameter]
        public SwitchParameter Salvage { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string source in ResolvedImagePaths())
            {
                string destination = null;
                OvfPackage package = null;
                try
                {
                    string named = source;
                    if (OvfPackage.IsPackage(source))
                    {
                        // A disk straight out of an appliance; a default destination is named after its file.
                        package = WithImageWarnings(() => OvfPackage.Open(source, Force.IsPresent));
                        named = Transports.Resolve(source, System.IO.Path.GetFileName(package.SelectDisk(Member).File), System.IO.Path.Combine);
                    }
                    else if (Member != null)
                    {
                        throw new ImageOptionException(source, "Member", "-Member picks a disk of an OVA or OVF package; the source is a disk image");
                    }

                    var plan = new ConvertPlan
                    {
                        SourcePath = named,
                        Destination = string.IsNullOrEmpty(Destination) ? null : ResolveNewPath(Destination),
                        Format = ParseFormat(Format),
                        SourceFormat = ParseFormat(SourceFormat),
                        Type = string.IsNullOrEmpty(Type) ? (DiskType?)null : (DiskType)System.Enum.Parse(typeof(DiskType), Type, true),
                        Subformat = Subformat,
                        Compress = Compress.IsPresent,
                        CompressionType = IsBound(nameof(CompressionType)) ? (CompressionType?)CompressionType : null,
                        SparseSize = IsBound(nameof(SparseSize)) ? (long?)checked((long)SparseSize) : null,
                        Snapshot = Snapshot,
                        ParentFormat = ParseFormat(ParentFormat),
                        ClusterSize = IsBound(nameof(ClusterSize)) ? (long?)checked((long)ClusterSize) : null,
                        NoCreate = NoCreate.IsPresent,
                        TargetIsZero = TargetIsZero.IsPresent,
                        Preallocation = IsBound(nameof(Preallocation)) ? (Preallocation?)Preallocation : null,
                        ThrottleLimit = IsBound(nameof(ThrottleLimit)) ? (int?)ThrottleLimit : null,
                        Encryption = Encryption,
                        Option = Unwrap(Option),
                        Force = Force.IsPresent,
                        ShareWithWriters = Force.IsPresent,
                        DeleteSource = DeleteSource.IsPresent,
                        IgnoreParentMismatch = IgnoreIdMismatch.IsPresent,
                    };
                    destination = plan.ResolveDestination(out DiskFormat targetFormat);
                    plan.ParentPath = ParentPathToRecord(destination, ParentPath);
                    ConvertOptions options = plan.BuildOptions(destination, targetFormat);
                    options.Salvage = Salvage ? new SalvageLog() : null;
                    string kind = targetFormat.ToName() + (string.IsNullOrEmpty(Subformat) ? string.Empty : " " + Subformat) + (string.IsNullOrEmpty(Type) ? string.Empty : " " + Type);
                    if (!ShouldProcess(destination, $"Convert '{source}' to {kind}{(string.IsNullOrEmpty(ParentPath) ? string.Empty : $" over the parent '{ParentPath}'")}{(DeleteSource ? ", then delete the source" : string.Empty)}"))
                    {
                        continue;
                    }

                    string target = destination;
                    if (AsJob && package == null)
                    {
                        _jobWork.Add((source, target, targetFormat, options));
                        continue;
                    }

                    WriteVerboseChain(source, options.SourceFormat, Force.IsPresent);
                    if (package != null)
                    {
                        RunEngine(Activity("Convert-VDisk", source + " (" + package.SelectDisk(Member).File + ")", target), (progress, cancel) => package.Convert(Member, target, options, progress, cancel));
                    }
                    else
                    {
                        RunEngine(Activity("Convert-VDisk", source, target), (progress, cancel) => ConvertOperation.Run(source, target, options, progress, cancel));
                    }

                    WriteVerboseOutput(destination);
                    foreach (string warning in options.Target.Warnings)
                    {
                        WriteWarning($"{destination}: {warning}");
                    }

                    if (options.Salvage != null)
                    {
                        WriteSalvageResult(source, destination, options.Salvage);
                    }

                    if (PassThru)
                    {
                        WriteObject(ImageInspector.Get(destination, targetFormat));
                    }
                }
                catch (ImageException e)
                {
                    WriteImageError(e, destination ?? source);
                }
                catch (System.OverflowException e)
                {
                    WriteError(ErrorMessages.Record(ErrorCode.InvalidOption, e, source));
                }
                finally
                {
                    package?.Dispose();
                }
            }
        }

        protected override void EndProcessing()
        {
            if (!AsJob || _jobWork.Count == 0)
            {
                return;
            }

            var work = _jobWork.ToArray();
            var job = new VDiskJob(MyInvocation.Line, $"Convert-VDisk ({work.Length} image{(work.Length == 1 ? string.Empty : "s")})");
            JobRepository.Add(job);
            TransportOptions remote = RemoteOptions;
            ImageSecrets secrets = Secrets(ImagePassword);
            job.Start((j, cancel) =>
            {
                // The job's thread gets the cmdlet's credential and password, which the session's scope does not reach.
                using (ImageSecrets.Use(secrets))
                using (TransportOptions.Use(remote))
                foreach (var item in work)
                {
                    cancel.ThrowIfCancellationRequested();
                    try
                    {
                        using (ImageWarnings.Capture(out var warnings))
                        {
                            ConvertOperation.Run(item.Source, item.Destination, item.Options, null, cancel);
                            foreach (string warning in item.Options.Target.Warnings)
                            {
                                j.Warning.Add(new WarningRecord($"{item.Destination}: {warning}"));
                            }

                            j.Output.Add(PSObject.AsPSObject(ImageInspector.Get(item.Destination, item.Format)));
                            foreach (string warning in warnings)
                            {
                                j.Warning.Add(new WarningRecord(warning));
                            }
                        }
                    }
                    catch (ImageException e)
                    {
                        j.AddImageError(ImageErrorRecord(e, item.Destination));
                    }
                }
            });
            WriteObject(job);
        }
    }
}
