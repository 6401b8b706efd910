using System.Linq;
using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS.Commands
{
    /// <summary>Get-VDiskBitmap: lists the persistent dirty bitmaps of images.</summary>
    [Cmdlet(VerbsCommon.Get, "VDiskBitmap", DefaultParameterSetName = ParameterSets.Path)]
    [OutputType(typeof(VDiskBitmapInfo))]
    public sealed class GetVDiskBitmapCommand : VDiskSourceCmdlet
    {
        /// <summary>Only bitmaps whose name matches (wildcards allowed).</summary>
        [Parameter(Position = 1)]
        [SupportsWildcards]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(BitmapNameCompleter))]
        public string Name { get; set; }

        /// <summary>List the bitmaps even while another process writes the image.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override bool ForceSharesWithWriters => true;

        protected override void ProcessRecord()
        {
            var pattern = string.IsNullOrEmpty(Name) ? null : new WildcardPattern(Name, WildcardOptions.IgnoreCase);
            foreach (string file in ResolvedImagePaths())
            {
                try
                {
                    foreach (var bitmap in WithImageWarnings(() => BitmapOperations.List(file, null, Force.IsPresent)))
                    {
                        if (pattern == null || pattern.IsMatch(bitmap.Name))
                        {
                            WriteObject(bitmap);
                        }
                    }
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }

    /// <summary>Base of the cmdlets that change one named bitmap.</summary>
    public abstract class VDiskBitmapChangeCmdlet : VDiskPathCmdlet
    {
        /// <summary>The bitmap's name. Binds from Get-VDiskBitmap output.</summary>
        [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(BitmapNameCompleter))]
        public string Name { get; set; }

        protected abstract string Action { get; }

        /// <summary>The bitmap named -Name as the image now records it.</summary>
        protected System.Collections.Generic.List<VDiskBitmapInfo> Current(string file)
            => BitmapOperations.List(file).Where(b => b.Name == Name).ToList();

        protected abstract void Apply(string file);

        protected override void ProcessRecord()
        {
            foreach (string file in ResolvedImagePaths())
            {
                if (!ShouldProcess(file, $"{Action} bitmap '{Name}'"))
                {
                    continue;
                }

                try
                {
                    Apply(file);
                }
                catch (ImageException e)
                {
                    WriteImageError(e, file);
                }
            }
        }
    }

    /// <summary>Base of the bitmap changes that output nothing unless -PassThru is given.</summary>
    public abstract class VDiskBitmapPassThruCmdlet : VDiskBitmapChangeCmdlet
    {
        /// <summary>Output the bitmap's info after the change (for Remove-VDiskBitmap: as it was before).</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        /// <summary>Whether the output is the bitmap as it was before the change (it is gone after).</summary>
        protected virtual bool OutputBeforeChange => false;

        protected abstract void Change(string file);

        protected sealed override void Apply(string file)
        {
            var before = PassThru && OutputBeforeChange ? Current(file) : null;
            Change(file);
            if (PassThru)
            {
                WriteObject(before ?? Current(file), enumerateCollection: true);
            }
        }
    }

    /// <summary>Add-VDiskBitmap: adds a persistent dirty bitmap (qemu-img bitmap --add).</summary>
    [Cmdlet(VerbsCommon.Add, "VDiskBitmap", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskBitmapInfo))]
    public sealed class AddVDiskBitmapCommand : VDiskBitmapChangeCmdlet
    {
        /// <summary>Bytes one bit of the bitmap stands for (a power of two, 512 B to 2 GiB). Default: the image's cluster size (64 KiB for qcow2).</summary>
        [Parameter]
        [SizeTransformation]
        public ulong Granularity { get; set; }

        /// <summary>Create the bitmap disabled (it does not record writes until enabled).</summary>
        [Parameter]
        public SwitchParameter Disabled { get; set; }

        protected override string Action => "Add";

        protected override void Apply(string file)
        {
            BitmapOperations.Change(file, null, b => b.AddBitmap(Name, IsBound(nameof(Granularity)) ? checked((long)Granularity) : 0, Disabled.IsPresent));
            WriteObject(Current(file), enumerateCollection: true);
        }
    }

    /// <summary>Remove-VDiskBitmap: deletes a persistent bitmap (qemu-img bitmap --remove).</summary>
    [Cmdlet(VerbsCommon.Remove, "VDiskBitmap", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(VDiskBitmapInfo))]
    public sealed class RemoveVDiskBitmapCommand : VDiskBitmapPassThruCmdlet
    {
        protected override string Action => "Remove";

        protected override bool OutputBeforeChange => true;

        protected override void Change(string file) => BitmapOperations.Change(file, null, b => b.RemoveBitmap(Name));
    }

    /// <summary>Clear-VDiskBitmap: marks every bit of a bitmap clean (qemu-img bitmap --clear).</summary>
    [Cmdlet(VerbsCommon.Clear, "VDiskBitmap", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskBitmapInfo))]
    public sealed class ClearVDiskBitmapCommand : VDiskBitmapPassThruCmdlet
    {
        protected override string Action => "Clear";

        protected override void Change(string file) => BitmapOperations.Change(file, null, b => b.ClearBitmap(Name));
    }

    /// <summary>Enable-VDiskBitmap: makes a bitmap record writes again (qemu-img bitmap --enable).</summary>
    [Cmdlet(VerbsLifecycle.Enable, "VDiskBitmap", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskBitmapInfo))]
    public sealed class EnableVDiskBitmapCommand : VDiskBitmapPassThruCmdlet
    {
        protected override string Action => "Enable";

        protected override void Change(string file) => BitmapOperations.Change(file, null, b => b.SetBitmapEnabled(Name, true));
    }

    /// <summary>Disable-VDiskBitmap: stops a bitmap recording writes (qemu-img bitmap --disable).</summary>
    [Cmdlet(VerbsLifecycle.Disable, "VDiskBitmap", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskBitmapInfo))]
    public sealed class DisableVDiskBitmapCommand : VDiskBitmapPassThruCmdlet
    {
        protected override string Action => "Disable";

        protected override void Change(string file) => BitmapOperations.Change(file, null, b => b.SetBitmapEnabled(Name, false));
    }

    /// <summary>Merge-VDiskBitmap: ORs another bitmap into this one (qemu-img bitmap --merge).</summary>
    [Cmdlet(VerbsData.Merge, "VDiskBitmap", DefaultParameterSetName = ParameterSets.Path, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VDiskBitmapInfo))]
    public sealed class MergeVDiskBitmapCommand : VDiskBitmapPassThruCmdlet
    {
        /// <summary>The bitmap to merge from.</summary>
        [Parameter(Mandatory = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(BitmapNameCompleter))]
        public string SourceName { get; set; }

        /// <summary>The image holding -SourceName; default: the same image (qemu-img bitmap -b).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string SourcePath { get; set; }

        protected override string Action => "Merge into";

        protected override void Change(string file)
        {
            string source = string.IsNullOrEmpty(SourcePath) ? null : GetUnresolvedProviderPathFromPSPath(SourcePath);
            BitmapOperations.Merge(file, null, Name, source, null, SourceName);
        }
    }
}
