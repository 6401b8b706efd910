#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# The module ships a .NET Framework 4.7.2 build (Desktop/, Windows PowerShell 5.1), a .NET 8 build
# (Core/, PowerShell 7) and Core/'s assemblies precompiled for .NET 10 (Core/<os-arch>/, PowerShell
# 7.6+ on that platform); VDiskPS.psm1 picks one at import. These tests hold in either edition and
# are written for Windows PowerShell 5.1's language too.
BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:CmdletNames = (Get-Command -Module VDiskPS -CommandType Cmdlet).Name
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Module = Get-Module VDiskPS
    $script:Precompiled = Get-PrecompiledPlatform
    $script:Cmdlets = (Get-Command Convert-VDisk).ImplementingType.Assembly
    $script:Engine = [VDiskPS.VDiskInfo].Assembly
    $script:Pwsh = if ($PSEdition -eq 'Core') { Join-Path $PSHOME ($(if ($IsWindows) { 'pwsh.exe' } else { 'pwsh' })) } else { $null }

    # The build folder the loader should pick: the precompiled one where there is one, else the edition's.
    function Get-ExpectedFolder([string] $ModuleBase, [string] $Precompiled) {
        $folder = if ($Precompiled) { Join-Path (Join-Path $ModuleBase 'Core') $Precompiled } else { Join-Path $ModuleBase $PSEdition }
        [System.IO.Path]::GetFullPath($folder)
    }

    # A fresh pwsh importing a staged module and converting 16 MiB: where the cmdlets were loaded
    # from, and how many methods the runtime JIT-compiled on the pipeline's thread for the first
    # convert (the runtime's own count, System.Runtime.JitInfo; on that thread only, because the
    # background recompiling of hot methods would make the total vary from run to run).
    function Invoke-FirstConvert([string] $ModuleBase) {
        $work = Join-Path ([System.IO.Path]::GetTempPath()) ([guid]::NewGuid().ToString('N'))
        New-Item -ItemType Directory -Path $work | Out-Null
        try {
            [System.IO.File]::WriteAllBytes((Join-Path $work 'src.img'), (New-TestBytes -Length 16MB -Seed 21))
            $script = "Import-Module '$ModuleBase'; Set-Location -LiteralPath '$work'; " +
                '$before = [System.Runtime.JitInfo]::GetCompiledMethodCount($true); ' +
                'Convert-VDisk -Path src.img -Destination out.qcow2; ' +
                '$jitted = [System.Runtime.JitInfo]::GetCompiledMethodCount($true) - $before; ' +
                '(Get-Command Convert-VDisk).ImplementingType.Assembly.Location; $jitted'
            $output = & $script:Pwsh -NoProfile -NonInteractive -Command $script
            $LASTEXITCODE | Should -Be 0 -Because ($output | Out-String)
            if (Get-Command qemu-img -ErrorAction Ignore) {
                & qemu-img compare -q -f raw -F qcow2 (Join-Path $work 'src.img') (Join-Path $work 'out.qcow2')
                $LASTEXITCODE | Should -Be 0
            }
            [pscustomobject]@{ Folder = Split-Path $output[0] -Parent; Jitted = [int]$output[1] }
        }
        finally {
            Remove-Item -LiteralPath $work -Recurse -Force
        }
    }
}

Describe 'Edition' {
    It 'loads the build of the running edition and platform' {
        $expected = Get-ExpectedFolder $script:Module.ModuleBase $script:Precompiled
        Split-Path $script:Cmdlets.Location -Parent | Should -Be $expected
        Split-Path $script:Engine.Location -Parent | Should -Be $expected
        # This CI: PowerShell 7.6 (.NET 10) on linux-x64, which has its precompiled build.
        if ($PSEdition -eq 'Core' -and $IsLinux -and [Environment]::Version.Major -ge 10 -and [System.Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture -eq 'X64') {
            $script:Precompiled | Should -Be 'linux-x64'
        }
    }

    It 'loads a build made for the running framework' {
        $framework = $script:Engine.GetCustomAttributes([System.Runtime.Versioning.TargetFrameworkAttribute], $false)[0].FrameworkName
        if ($PSEdition -eq 'Desktop') {
            $framework | Should -Be '.NETFramework,Version=v4.7.2'
        }
        else {
            # The precompiled build is the same net8.0 IL as Core/, with native code beside it.
            $framework | Should -Be '.NETCoreApp,Version=v8.0'
        }
    }

    It 'exports every cmdlet the loaded build implements' {
        $implemented = foreach ($type in $script:Cmdlets.GetExportedTypes()) {
            $attribute = $type.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)
            if ($attribute) { '{0}-{1}' -f $attribute[0].VerbName, $attribute[0].NounName }
        }

        @($implemented).Count | Should -BeGreaterThan 0
        (Get-Command -Module VDiskPS -CommandType Cmdlet).Name | Sort-Object | Should -Be ($implemented | Sort-Object)
        @($script:Module.ExportedCmdlets.Keys) | Sort-Object | Should -Be ($implemented | Sort-Object)
    }

    It 'finds the help of <_>' -ForEach $script:CmdletNames {
        $help = Get-Help $_ -Examples
        $help.Synopsis | Should -Not -BeNullOrEmpty
        # Without a help file PowerShell makes the synopsis from the syntax.
        $help.Synopsis | Should -Not -Match ('^\s*' + [regex]::Escape($_) + '\s')
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 1
    }

    It 'ships no native library: zstd is the managed ZstdSharp beside the engine of this edition' {
        $folder = Get-ExpectedFolder $script:Module.ModuleBase $script:Precompiled
        Join-Path $folder 'ZstdSharp.dll' | Should -Exist
        @(Get-ChildItem -LiteralPath $script:Module.ModuleBase -Recurse -File | Where-Object Extension -NE '.dll' | Where-Object Name -Like '*zstd*') | Should -HaveCount 0
        Join-Path $folder 'x64' | Should -Not -Exist
    }
}

Describe 'Precompiled build' {
    BeforeAll {
        # The same module without its precompiled folders: what PowerShell 7.4 and 7.5 (.NET 8 and 9),
        # and 7.6 on a platform without a precompiled build, load.
        $script:IlOnly = Join-Path ([System.IO.Path]::GetTempPath()) ([guid]::NewGuid().ToString('N'))
        $copy = Join-Path $script:IlOnly 'VDiskPS'
        Copy-Item -LiteralPath $script:Module.ModuleBase -Destination $copy -Recurse
        Get-ChildItem -LiteralPath (Join-Path $copy 'Core') -Directory | Remove-Item -Recurse -Force
    }

    AfterAll { Remove-Item -LiteralPath $script:IlOnly -Recurse -Force -ErrorAction Ignore }

    It 'loads Core/ without the precompiled folders, and where they are loaded, runs their native code' {
        if ($PSEdition -eq 'Desktop') {
            # Windows PowerShell has neither: the copy still loads Desktop/ (no child process: the
            # JIT count below needs .NET Core).
            Import-Module (Join-Path $script:IlOnly 'VDiskPS') -Force
            try { Split-Path (Get-Command Convert-VDisk).ImplementingType.Assembly.Location -Parent | Should -Be ([System.IO.Path]::GetFullPath((Join-Path $script:Module.ModuleBase 'Desktop'))) }
            finally { Import-Module $script:Module.ModuleBase -Force }
            return
        }

        $il = Invoke-FirstConvert (Join-Path $script:IlOnly 'VDiskPS')
        $il.Folder | Should -Be ([System.IO.Path]::GetFullPath((Join-Path (Join-Path $script:IlOnly 'VDiskPS') 'Core')))
        $precompiled = Invoke-FirstConvert $script:Module.ModuleBase
        $precompiled.Folder | Should -Be (Get-ExpectedFolder $script:Module.ModuleBase $script:Precompiled)
        if ($script:Precompiled) {
            # Measured: 86 against 337 (what is left is PowerShell's own and generic framework code).
            $precompiled.Jitted | Should -BeLessThan ($il.Jitted / 2) -Because "the precompiled build JIT-compiled $($precompiled.Jitted) methods, Core/ $($il.Jitted)"
        }
    }
}

Describe 'Dependencies of the engine' {
    BeforeEach { Push-Location TestDrive: }
    AfterEach { Pop-Location }

    # Converting goes through ArrayPool (System.Buffers) and Span (System.Memory): the calls that
    # failed with FileLoadException in Windows PowerShell when the shipped versions did not match.
    # (What this checks is loading; qemu-img judges the conversions in the xunit interop tests.)
    It 'converts and compares an image (ArrayPool, Span)' {
        [System.IO.File]::WriteAllBytes((Join-Path (Get-Location).ProviderPath 'src.img'), (New-TestBytes -Length 4MB -Seed 9))
        $converted = Convert-VDisk -Path src.img -Destination copy.qcow2 -PassThru
        $converted.Format | Should -Be 'qcow2'
        Compare-VDisk -ReferencePath src.img -DifferencePath copy.qcow2 -Quiet | Should -BeTrue
    }

    # zstd goes through ZstdSharp (and, on Windows PowerShell, System.Memory 4.6.0 and Unsafe 6.1.0).
    It 'converts to a zstd-compressed qcow2 and reads it back (ZstdSharp)' {
        [System.IO.File]::WriteAllBytes((Join-Path (Get-Location).ProviderPath 'src.img'), (New-TestBytes -Length 4MB -Seed 10))
        Convert-VDisk -Path src.img -Destination z.qcow2 -Compress -CompressionType Zstd
        Compare-VDisk -ReferencePath src.img -DifferencePath z.qcow2 -Quiet | Should -BeTrue
        if (Get-Command qemu-img -ErrorAction Ignore) {
            & qemu-img compare -q -f raw -F qcow2 src.img z.qcow2
            $LASTEXITCODE | Should -Be 0
        }
    }
}
