#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

Describe 'Module' {
    It 'exports the foundation cmdlets' {
        $names = (Get-Command -Module VDiskPS).Name
        $names | Should -Contain 'New-VDisk'
        $names | Should -Contain 'Get-VDisk'
        $names | Should -Contain 'Get-VDiskChain'
        $names | Should -Contain 'Convert-VDisk'
    }

    It 'has help with examples for <_>' -ForEach @('New-VDisk', 'Get-VDisk', 'Get-VDiskChain', 'Convert-VDisk') {
        $help = Get-Help $_ -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 2
    }
}

Describe 'New-VDisk' {
    BeforeEach { Push-Location TestDrive: }
    AfterEach { Pop-Location }

    It 'creates a sparse raw image of the size given as a PowerShell literal' {
        $info = New-VDisk -Path disk.img -SizeBytes 64MB
        $info.Format | Should -Be 'raw'
        $info.Size | Should -Be 64MB
        (Get-Item TestDrive:/disk.img).Length | Should -Be 64MB
    }

    It 'takes qemu-style size strings' {
        (New-VDisk -Path q.raw -Size '16M').Size | Should -Be 16MB
    }

    It 'resolves a relative path against the PowerShell location, not the process directory' {
        New-VDisk -Path rel.raw -SizeBytes 1MB | Out-Null
        Test-Path (Join-Path (Get-PSDrive TestDrive).Root 'rel.raw') | Should -BeTrue
    }

    It 'creates nothing with -WhatIf' {
        New-VDisk -Path whatif.raw -SizeBytes 1MB -WhatIf
        Test-Path TestDrive:/whatif.raw | Should -BeFalse
    }

    It 'keeps an existing file unless -Force is given' {
        Set-Content -Path TestDrive:/exists.raw -Value 'keep'
        New-VDisk -Path exists.raw -SizeBytes 1MB -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.FileExists*'
        Get-Content TestDrive:/exists.raw | Should -Be 'keep'
        (New-VDisk -Path exists.raw -SizeBytes 1MB -Force).Size | Should -Be 1MB
    }

    It 'refuses an unknown option by name' {
        New-VDisk -Path opt.raw -SizeBytes 1MB -Option @{ clustr_size = '64k' } -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption*'
        $err[0].Exception.Message | Should -Match 'clustr_size'
    }

    It 'asks for a format when the extension names none' {
        New-VDisk -Path disk.unknown -SizeBytes 1MB -ErrorVariable err -ErrorAction SilentlyContinue
        # The engine's message names no switch; the record's text advises New-VDisk's own.
        $err[0].ToString() | Should -Match '-Format'
    }
}

Describe 'Get-VDisk' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path a.raw -SizeBytes 2MB | Out-Null
        New-VDisk -Path b.raw -SizeBytes 4MB | Out-Null
        New-VDisk -Path 'c[1].raw' -SizeBytes 1MB | Out-Null
    }
    AfterAll { Pop-Location }

    It 'expands wildcards' {
        (Get-VDisk -Path ?.raw).Count | Should -Be 2
    }

    It 'takes Get-ChildItem output from the pipeline' {
        $infos = Get-ChildItem TestDrive:/ -Filter ?.raw | Get-VDisk
        ($infos | Measure-Object Size -Sum).Sum | Should -Be 6MB
    }

    It 'takes path strings from the pipeline' {
        ('a.raw', 'b.raw' | Get-VDisk).Format | Should -Be @('raw', 'raw')
    }

    It 'reads a name with brackets through -LiteralPath' {
        (Get-VDisk -LiteralPath 'c[1].raw').Size | Should -Be 1MB
    }

    It 'writes a non-terminating error for a missing file and goes on' {
        $out = Get-VDisk -Path missing.raw, a.raw -ErrorVariable err -ErrorAction SilentlyContinue
        $out.Size | Should -Be 2MB
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.PathNotFound*'
    }

    It 'returns objects that carry Path and FullName' {
        $info = Get-VDisk a.raw
        $info.Path | Should -Be $info.FullName
        $info.PSObject.TypeNames[0] | Should -Be 'VDiskPS.VDiskInfo'
    }
}

Describe 'Get-VDiskChain' {
    It 'returns one layer with depth 0 for an image without parent' {
        Push-Location TestDrive:
        try {
            New-VDisk -Path solo.raw -SizeBytes 1MB | Out-Null
            $chain = @(Get-VDiskChain solo.raw)
            $chain.Count | Should -Be 1
            $chain[0].Depth | Should -Be 0
        }
        finally { Pop-Location }
    }
}

Describe 'Convert-VDisk' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path src.raw -SizeBytes 8MB | Out-Null
        $fs = [System.IO.File]::OpenWrite((Join-Path (Get-PSDrive TestDrive).Root 'src.raw'))
        $fs.Position = 1MB
        $data = New-TestBytes 65536 1
        $fs.Write($data, 0, $data.Length)
        $fs.Dispose()
    }
    AfterAll { Pop-Location }

    It 'converts to the destination and returns its info with -PassThru' {
        $info = Convert-VDisk -Path src.raw -Destination copy.img -PassThru
        $info.Size | Should -Be 8MB
        (Get-FileHash TestDrive:/copy.img).Hash | Should -Be (Get-FileHash TestDrive:/src.raw).Hash
    }

    It 'writes into a folder under the source name with the format extension' {
        New-Item -ItemType Directory TestDrive:/outdir | Out-Null
        Convert-VDisk -Path src.raw -Destination outdir -Format raw
        Test-Path TestDrive:/outdir/src.raw | Should -BeTrue
    }

    It 'pipes Get-VDisk output into Convert-VDisk' {
        Get-VDisk src.raw | Convert-VDisk -Destination piped.img
        Test-Path TestDrive:/piped.img | Should -BeTrue
    }

    It 'does nothing with -WhatIf' {
        Convert-VDisk -Path src.raw -Destination never.img -WhatIf
        Test-Path TestDrive:/never.img | Should -BeFalse
    }

    It 'refuses to overwrite an existing destination without -Force' {
        Set-Content TestDrive:/taken.img 'keep'
        Convert-VDisk -Path src.raw -Destination taken.img -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.FileExists*'
        Get-Content TestDrive:/taken.img | Should -Be 'keep'
    }
}
