# Shared by the *.Tests.ps1 files: import the staged module and small helpers.
$script:ModulePath = if ($env:VDISKPS_MODULE) { $env:VDISKPS_MODULE } else { Join-Path $PSScriptRoot '../../out/VDiskPS' }
Import-Module (Resolve-Path $script:ModulePath).Path -Force -ErrorAction Stop

function New-TestBytes([int] $Length, [int] $Seed) {
    $bytes = [byte[]]::new($Length)
    [System.Random]::new($Seed).NextBytes($bytes)
    , $bytes
}
