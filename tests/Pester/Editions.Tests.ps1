#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# The module ships a .NET Framework 4.7.2 build (Desktop/, Windows PowerShell 5.1) and a .NET 8 build
# (Core/, PowerShell 7); the manifest picks one by $PSEdition. These tests hold in either edition and
# are written for Windows PowerShell 5.1's language too.
BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:CmdletNames = (Get-Command -Module VDiskPS -CommandType Cmdlet).Name
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Module = Get-Module VDiskPS
    $script:EditionFolder = [System.IO.Path]::GetFullPath((Join-Path $script:Module.ModuleBase $PSEdition))
    $script:Engine = [VDiskPS.VDiskInfo].Assembly
}

Describe 'Edition' {
    It 'loads the build of the running edition' {
        [System.IO.Path]::GetFullPath((Split-Path $script:Module.Path -Parent)) | Should -Be $script:EditionFolder
        Split-Path $script:Engine.Location -Parent | Should -Be $script:EditionFolder
    }

    It 'loads a build made for the running framework' {
        $framework = $script:Engine.GetCustomAttributes([System.Runtime.Versioning.TargetFrameworkAttribute], $false)[0].FrameworkName
        if ($PSEdition -eq 'Desktop') {
            $framework | Should -Be '.NETFramework,Version=v4.7.2'
        }
        else {
            $framework | Should -Be '.NETCoreApp,Version=v8.0'
        }
    }

    It 'exports every cmdlet the loaded build implements' {
        $implemented = foreach ($type in $script:Module.ImplementingAssembly.GetExportedTypes()) {
            $attribute = $type.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)
            if ($attribute) { '{0}-{1}' -f $attribute[0].VerbName, $attribute[0].NounName }
        }

        @($implemented).Count | Should -BeGreaterThan 0
        (Get-Command -Module VDiskPS -CommandType Cmdlet).Name | Sort-Object | Should -Be ($implemented | Sort-Object)
    }

    It 'finds the help of <_>' -ForEach $script:CmdletNames {
        $help = Get-Help $_ -Examples
        $help.Synopsis | Should -Not -BeNullOrEmpty
        # Without a help file PowerShell makes the synopsis from the syntax.
        $help.Synopsis | Should -Not -Match ('^\s*' + [regex]::Escape($_) + '\s')
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 1
    }

    It 'ships no native library: zstd is the managed ZstdSharp beside the engine of this edition' {
        Join-Path $script:EditionFolder 'ZstdSharp.dll' | Should -Exist
        @(Get-ChildItem -LiteralPath $script:EditionFolder -Recurse -File | Where-Object Extension -NE '.dll' | Where-Object Name -Like '*zstd*') | Should -HaveCount 0
        Join-Path $script:EditionFolder 'x64' | Should -Not -Exist
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
