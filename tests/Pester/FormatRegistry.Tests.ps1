#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# The format registry as a user meets it: Get-VDiskFormat, -Format validation and completion that
# come from the registry (readable formats for sources, writable ones for targets), and the errors of
# a format name that is not known or not writable. qemu-img judges the images made on the way.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    Set-Location TestDrive:
    $script:Formats = @(Get-VDiskFormat)
    $script:Readable = @($script:Formats.Name)
    $script:Writable = @(($script:Formats | Where-Object CanWrite).Name)
}

Describe 'Get-VDiskFormat' {
    It 'lists every format the engine knows, with qemu names, extensions and typed create options' {
        $script:Readable | Should -Contain 'qcow2'
        $script:Readable | Should -Contain 'vhd'
        ($script:Formats | Where-Object Name -EQ 'vhd').QemuName | Should -Be 'vpc'
        ($script:Formats | Where-Object Name -EQ 'vhdx').Extensions | Should -Be @('.vhdx', '.avhdx')
        $clusterSize = (Get-VDiskFormat qcow2).CreateOptions | Where-Object Name -EQ 'cluster_size'
        $clusterSize.Type | Should -Be 'Size'
        $compression = (Get-VDiskFormat qcow2).CreateOptions | Where-Object Name -EQ 'compression_type'
        $compression.Choices | Should -Be @('zlib', 'zstd')
        (Get-VDiskFormat vmdk).Subformats | Should -Contain 'streamOptimized'
    }

    It 'finds formats by qemu name and wildcard, and -Writable keeps the targets only' {
        (Get-VDiskFormat vpc).Name | Should -Be 'vhd'
        @(Get-VDiskFormat 'vhd*').Name | Should -Be @('vhd', 'vhdx')
        @(Get-VDiskFormat -Writable).Name | Should -Be $script:Writable
        @(Get-VDiskFormat -Writable | Where-Object { -not $_.CanWrite }).Count | Should -Be 0
    }

    It 'reports an unknown name as VDisk.FormatNotFound and goes on' {
        $found = @(Get-VDiskFormat qcow3, qcow2 -ErrorVariable errors -ErrorAction SilentlyContinue)
        $found.Name | Should -Be @('qcow2')
        $errors[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.FormatNotFound*'
        $errors[0].Exception.Message | Should -BeLike "*'qcow3'*"
    }

    It 'renders as a table of name, writability, extensions and description' {
        $lines = @((Get-VDiskFormat qcow2, raw | Out-String -Width 80) -split "`r?`n" | Where-Object { $_.Trim() })
        ($lines[0] -split '\s+' | Where-Object { $_ }) | Should -Be @('Name', 'CanWrite', 'Extensions', 'Description')
        $lines | Where-Object { $_ -match '^qcow2\s+True\s+\.qcow2' } | Should -Not -BeNullOrEmpty
    }
}

Describe '-Format comes from the registry' {
    It 'accepts every readable format on a reading cmdlet and qemu names as well' {
        qemu-img create -f vpc -q fixed.vhd 4M
        (Get-VDisk fixed.vhd -Format vpc).Format | Should -Be 'vhd'
        (Get-VDisk fixed.vhd -Format VHD).Format | Should -Be 'vhd'
    }

    It 'refuses an unknown format in parameter binding, listing the known ones' {
        { New-VDisk x.img -SizeBytes 1MB -Format qcow3 -ErrorAction Stop } | Should -Throw "*'qcow3' is not accepted: it is not a format this build knows. Formats it writes: $($script:Writable -join ', ')*"
        Test-Path x.img | Should -BeFalse
    }

    It 'completes -Format with readable formats for a source and writable ones for a target' {
        $line = 'Convert-VDisk a.raw -SourceFormat '
        $sources = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText
        $sources | Should -Be $script:Readable
        $line = 'Convert-VDisk a.raw -Format '
        $targets = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText
        $targets | Should -Be $script:Writable
        $line = 'Convert-VDisk a.raw -Format vh'
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be @('vhd', 'vhdx')
    }

    It 'converts with a qemu name as the target format, judged by qemu-img' {
        qemu-img create -f raw -q src.raw 4M
        qemu-io -f raw -c 'write -P 0x5a 1M 64k' src.raw | Out-Null
        Convert-VDisk src.raw -Destination out.vhd -Format vpc
        qemu-img compare -q -f raw -F vpc src.raw out.vhd
        $LASTEXITCODE | Should -Be 0
    }
}
