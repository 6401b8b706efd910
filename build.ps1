<#
.SYNOPSIS
    Builds VDiskPS and stages an importable module in out/VDiskPS.
.DESCRIPTION
    Builds the solution, lays out out/VDiskPS (manifest, format file, en-US/VDiskPS.dll-Help.xml
    made from docs/help, the loader VDiskPS.psm1, and the assemblies with their dependencies in Desktop/ for Windows PowerShell 5.1,
    Core/ for PowerShell 7 and Core/<os-arch>/ for PowerShell 7.6+ on .NET 10, precompiled by the SDK's crossgen) and, with -Test,
    runs the xunit suite and, where Pester 5 is installed, tests/Pester against the staged module.
    Works in PowerShell 7 (Windows, Linux, macOS) and Windows PowerShell 5.1; needs the .NET 10 SDK.
.EXAMPLE
    ./build.ps1; Import-Module ./out/VDiskPS
.EXAMPLE
    ./build.ps1 -Test
#>
[CmdletBinding()]
param(
    [ValidateSet('Release', 'Debug')]
    [string] $Configuration = 'Release',

    # Where the module is staged.
    [string] $Output = (Join-Path $PSScriptRoot 'out/VDiskPS'),

    # Also run the xunit tests and the Pester tests.
    [switch] $Test,

    # Regenerate the SYNTAX and PARAMETERS sections of docs/help from the compiled cmdlets.
    [switch] $UpdateHelp
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

function Invoke-Dotnet {
    param([string[]] $Arguments)
    Write-Verbose ("dotnet " + ($Arguments -join ' '))
    & dotnet @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "dotnet $($Arguments -join ' ') failed with exit code $LASTEXITCODE"
    }
}

if (-not (Get-Command dotnet -ErrorAction SilentlyContinue)) {
    throw 'The .NET SDK (dotnet) is required: https://dotnet.microsoft.com/download'
}

$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'
Push-Location $PSScriptRoot
try {
    Invoke-Dotnet @('build', 'VDiskPS.sln', '-c', $Configuration, '--nologo')
    $stage = @('run', '--project', 'tools/VDiskPS.Stage', '-c', $Configuration, '--no-build', '--')
    if ($UpdateHelp) {
        Invoke-Dotnet ($stage + @('update-help', '--configuration', $Configuration))
    }

    Invoke-Dotnet ($stage + @('stage', '--configuration', $Configuration, '--output', $Output))

    if ($Test) {
        Invoke-Dotnet @('test', 'VDiskPS.sln', '-c', $Configuration, '--no-build', '--nologo')
        $pester = Get-Module -ListAvailable -Name Pester | Where-Object { $_.Version -ge [version]'5.0' } | Sort-Object Version -Descending | Select-Object -First 1
        if ($pester) {
            Import-Module $pester -Force
            $env:VDISKPS_MODULE = $Output
            $config = New-PesterConfiguration
            $config.Run.Path = Join-Path $PSScriptRoot 'tests/Pester'
            $config.Run.Exit = $false
            $config.Run.PassThru = $true
            $config.Output.Verbosity = 'Detailed'
            $result = Invoke-Pester -Configuration $config
            if ($result.FailedCount -gt 0) {
                throw "$($result.FailedCount) Pester test(s) failed"
            }
        }
        else {
            Write-Warning 'Pester 5 is not installed, so tests/Pester was skipped (Install-Module Pester -MinimumVersion 5.0 -Scope CurrentUser).'
        }
    }
}
finally {
    Pop-Location
}
