# Shared by the *.Tests.ps1 files: import the staged module and small helpers.
$script:ModulePath = if ($env:VDISKPS_MODULE) { $env:VDISKPS_MODULE } else { Join-Path $PSScriptRoot '../../out/VDiskPS' }
Import-Module (Resolve-Path $script:ModulePath).Path -Force -ErrorAction Stop

# The platform whose precompiled build (Core/<os-arch>/) the module loads here, or $null: one is
# loaded in PowerShell 7 on .NET 10+ on a platform the module has one for.
function Get-PrecompiledPlatform {
    if ($PSEdition -ne 'Core' -or [Environment]::Version.Major -lt 10) { return $null }
    $os = if ($IsWindows) { 'win' } elseif ($IsMacOS) { 'osx' } else { 'linux' }
    $platform = '{0}-{1}' -f $os, [System.Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture.ToString().ToLowerInvariant()
    if (Test-Path -LiteralPath (Join-Path (Get-Module VDiskPS).ModuleBase "Core/$platform/VDiskPS.dll")) { $platform }
}

# Writes bytes into a file at an offset; the path resolves against the PowerShell location.
function Write-Bytes([string] $Path, [long] $Offset, [byte[]] $Bytes) {
    $fs = [System.IO.File]::OpenWrite($ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($Path))
    try { $fs.Position = $Offset; $fs.Write($Bytes, 0, $Bytes.Length) } finally { $fs.Dispose() }
}

function New-TestBytes([int] $Length, [int] $Seed) {
    $bytes = [byte[]]::new($Length)
    [System.Random]::new($Seed).NextBytes($bytes)
    , $bytes
}
