# Shared by the *.Tests.ps1 files: import the staged module and small helpers.
$script:ModulePath = if ($env:VDISKPS_MODULE) { $env:VDISKPS_MODULE } else { Join-Path $PSScriptRoot '../../out/VDiskPS' }
Import-Module (Resolve-Path $script:ModulePath).Path -Force -ErrorAction Stop

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
