using System.Collections.Generic;
using System.Management.Automation;

namespace VDiskPS
{
    /// <summary>
    /// A cmdlet over existing images: -Path (wildcards, pipeline by value and by FullName) and
    /// -LiteralPath (PSPath, LP) in their own parameter sets, as Get-FileHash has them.
    /// </summary>
    public abstract class VDiskPathCmdlet : VDiskCmdlet
    {
        /// <summary>Path of the image file(s). Wildcards are expanded; relative paths resolve against the current PowerShell location. Accepts pipeline input (strings, Get-ChildItem output, VDiskInfo objects).</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = ParameterSets.Path, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName")]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; }

        /// <summary>Path of the image file(s), used exactly as written (no wildcard expansion).</summary>
        [Parameter(Mandatory = true, ParameterSetName = ParameterSets.LiteralPath, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath", "LP")]
        [ValidateNotNullOrEmpty]
        public string[] LiteralPath { get; set; }

        /// <summary>The password of an encrypted image (LUKS, qcow2 with LUKS or legacy AES encryption), as a SecureString: Read-Host -AsSecureString. Never written to a log, verbose output or an error.</summary>
        [Parameter]
        public System.Security.SecureString Password { get; set; }

        protected override System.Security.SecureString ImagePassword => Password;

        /// <summary>The existing files named by -Path or -LiteralPath; the others became error records.</summary>
        protected IEnumerable<string> ResolvedImagePaths()
        {
            bool literal = ParameterSetName == ParameterSets.LiteralPath;
            return ResolveExistingFiles(literal ? LiteralPath : Path, literal);
        }
    }
}
