#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# What a user sees of the module in a real host: table views at 80 columns, JSON, progress records,
# -Verbose, WhatIf and confirmation texts, error advice and targets, tab completion and help.
# qemu-img builds the fixtures and judges the qemu-compatible output; PowerShell's own formatter,
# TabExpansion2 and Get-Help judge the rest.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root
    $script:Pwsh = Join-Path $PSHOME ($(if ($IsWindows) { 'pwsh.exe' } else { 'pwsh' }))
    $script:Module = (Resolve-Path $script:ModulePath).Path

    # The lines of a table as the default view renders it in an 80-column console.
    function Get-TableLines($InputObject) {
        , @(($InputObject | Out-String -Width 80) -split "`r?`n" | Where-Object { $_.Trim() })
    }

    # Asserts a table's header is one line of exactly these labels, underlined, and no line passes 80 columns.
    function Assert-Table([string[]] $Lines, [string[]] $Labels) {
        ($Lines[0] -split '\s+' | Where-Object { $_ }) | Should -Be $Labels
        $Lines[1] | Should -Match '^[-\s]+$'
        $Lines | ForEach-Object { $_.Length | Should -BeLessOrEqual 80 }
    }

    # Runs commands in a child pwsh whose console output (WhatIf, prompts) is the result.
    function Invoke-Child([string] $Command, [string] $Answers) {
        $script = "Set-Location -LiteralPath '$script:Root'; Import-Module '$script:Module'; $Command"
        if ($Answers) { $output = $Answers | & $script:Pwsh -NoProfile -Command $script 2>&1 }
        else { $output = & $script:Pwsh -NoProfile -NonInteractive -Command $script 2>&1 }
        $output | Out-String
    }

    # Whether two parsed JSON values are the same, member by member; returns the first difference.
    function Compare-Json($Expected, $Actual, [string] $At = '$') {
        if ($Expected -is [System.Collections.IDictionary]) {
            if ($Actual -isnot [System.Collections.IDictionary]) { return "$At is not an object" }
            $missing = @($Expected.Keys | Where-Object { -not $Actual.Contains($_) })
            $extra = @($Actual.Keys | Where-Object { -not $Expected.Contains($_) })
            if ($missing -or $extra) { return "$At keys differ: missing [$($missing -join ', ')], extra [$($extra -join ', ')]" }
            foreach ($key in $Expected.Keys) {
                $difference = Compare-Json $Expected[$key] $Actual[$key] "$At.$key"
                if ($difference) { return $difference }
            }
            return $null
        }
        if ($Expected -is [System.Collections.IList]) {
            if ($Actual -isnot [System.Collections.IList] -or $Actual.Count -ne $Expected.Count) { return "$At has another length" }
            for ($i = 0; $i -lt $Expected.Count; $i++) {
                $difference = Compare-Json $Expected[$i] $Actual[$i] "$At[$i]"
                if ($difference) { return $difference }
            }
            return $null
        }
        if ("$Expected" -cne "$Actual") { return "$At is '$Actual', qemu-img says '$Expected'" }
        $null
    }
}

Describe 'Default views at 80 columns' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path big.qcow2 -SizeBytes 500000000000 | Out-Null
        New-VDisk -Path small.qcow2 -SizeBytes 16MB | Out-Null
        qemu-io -c 'write -P 0x5a 0 1M' small.qcow2 | Out-Null
        qemu-img snapshot -c before-upgrade small.qcow2
        qemu-img bitmap --add small.qcow2 nightly
        Convert-VDisk small.qcow2 copy.qcow2
        # A folder of its own keeps the paths short enough to show whole at 80 columns.
        $script:Short = Join-Path ([System.IO.Path]::GetTempPath()) "vdo$PID"
        New-Item -ItemType Directory -Path $script:Short -Force | Out-Null
        $script:Checked = Join-Path $script:Short 'checked-image-name.qcow2'
        Copy-Item small.qcow2 $script:Checked
    }
    AfterAll {
        Pop-Location
        Remove-Item -LiteralPath $script:Short -Recurse -Force
    }

    It 'shows a 500 GB disk as 465.66 GiB, never truncated' {
        $lines = Get-TableLines (Get-VDisk big.qcow2)
        Assert-Table $lines 'Format', 'Type', 'Size', 'FileSize', 'Depth', 'Path'
        $lines[2] | Should -Match '^qcow2\s+Dynamic\s+465\.66 GiB\s+[\d.]+ KiB\s+0 /'
    }

    It 'gives Path the width in Test-VDisk -Detailed and Repair-VDisk tables' {
        $script:Checked.Length | Should -BeGreaterThan 30
        foreach ($result in (Test-VDisk $script:Checked -Detailed), (Repair-VDisk $script:Checked -Mode Leaks -Confirm:$false)) {
            $lines = Get-TableLines $result
            Assert-Table $lines 'IsValid', 'Corruptions', 'Leaks', 'Fixed', 'Path'
            $lines[2] | Should -BeLike "*$($script:Checked)"
        }
    }

    It 'has a table for snapshots' {
        $lines = Get-TableLines (Get-VDiskSnapshot small.qcow2)
        Assert-Table $lines 'Id', 'Name', 'VmStateSize', 'Date', 'Path'
        $lines[2] | Should -Match '^1\s+before-upgrade\s+0 B\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s'
    }

    It 'has a table for bitmaps' {
        $lines = Get-TableLines (Get-VDiskBitmap small.qcow2)
        Assert-Table $lines 'Name', 'Granularity', 'Enabled', 'InUse', 'Auto', 'DirtyBytes', 'Path'
        $lines[2] | Should -Match '^nightly\s+64 KiB\s+True\s+False\s+True\s+0 B\s'
    }

    It 'shows a measurement with the image it measured' {
        $m = Measure-VDisk small.qcow2 -Format vhdx
        $m.Path | Should -Be (Join-Path $script:Root 'small.qcow2')
        $lines = Get-TableLines $m
        Assert-Table $lines 'Format', 'Required', 'FullyAllocated', 'Bitmaps', 'Path'
        $lines[2] | Should -Match '^vhdx\s+[\d.]+ MiB\s+[\d.]+ MiB\s'
    }

    It 'shows a comparison as a list with both paths whole' {
        $text = Compare-VDisk small.qcow2 copy.qcow2 | Out-String -Width 80
        $text | Should -Match 'Identical\s+: True'
        $text | Should -Match "ReferencePath\s+: $([regex]::Escape((Join-Path $script:Root 'small.qcow2')))"
        $text | Should -Match "DifferencePath\s+: $([regex]::Escape((Join-Path $script:Root 'copy.qcow2')))"
    }

    It 'shows a sync result in sizes' {
        Copy-Item small.qcow2 stale.qcow2
        qemu-io -c 'write -P 0x33 0 64k' stale.qcow2 | Out-Null
        $lines = Get-TableLines (Sync-VDisk -Path small.qcow2 -Destination stale.qcow2)
        Assert-Table $lines 'Compared', 'Written', 'Skipped', 'Path', 'Destination'
        $lines[2] | Should -Match '^\s*16 MiB\s+64 KiB\s+'
    }

    It 'keeps the map columns whole for offsets of a 500 GB disk' {
        $lines = Get-TableLines (Get-VDiskMap big.qcow2)
        Assert-Table $lines 'Start', 'Length', 'Depth', 'Present', 'Zero', 'Data', 'Offset', 'File'
        $lines[2] | Should -Match '\s500000000000\s'
    }

    It 'has a table for servers with every header whole' {
        $server = Start-VDiskServer -Path small.qcow2 -Port 0
        try {
            $lines = Get-TableLines $server
            Assert-Table $lines 'Id', 'Writable', 'Connections', 'Uri', 'Path'
        }
        finally { $server | Stop-VDiskServer }
    }
}

Describe 'JSON' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f qcow2 base.qcow2 64M
        qemu-io -c 'write -P 0x5a 0 1M' base.qcow2 | Out-Null
        qemu-img snapshot -c s1 base.qcow2
        qemu-img bitmap --add base.qcow2 b1
        qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
        qemu-img create -q -f vmdk disk.vmdk 64M
        qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse split.vmdk 64M
        qemu-img create -q -f vhdx disk.vhdx 64M
        qemu-img create -q -f raw disk.raw 64M
        qemu-img create -q -f vmdk -o subformat=streamOptimized stream.vmdk 64M
        qemu-img create -q -f qcow2 -o compat=0.10 old.qcow2 64M
        qemu-img create -q -f vdi disk.vdi 64M
        qemu-img create -q -f vpc disk.vhd 64M
        qemu-img create -q -f vpc -o subformat=fixed fixed.vhd 64M
        qemu-io -f raw -c 'write -P 1 1M 64k' disk.raw | Out-Null
    }
    AfterAll { Pop-Location }

    It 'ConvertTo-Json of Get-VDisk writes records, not type names, at the default depth' {
        foreach ($name in 'disk.vmdk', 'base.qcow2') {
            $json = Get-VDisk $name | ConvertTo-Json -WarningAction SilentlyContinue
            $json | Should -Not -Match 'System\.'
        }
        $extent = (Get-VDisk disk.vmdk | ConvertTo-Json -WarningAction SilentlyContinue | ConvertFrom-Json).FormatSpecific.extents[0] | ConvertFrom-Json
        $extent.filename | Should -Be (Join-Path $script:Root 'disk.vmdk')
        $extent.'virtual-size' | Should -Be 64MB
    }

    It 'Get-VDisk -AsQemuJson of <Name> has the keys and values of qemu-img info --output=json' -TestCases @(
        @{ Name = 'base.qcow2' }, @{ Name = 'top.qcow2' }, @{ Name = 'disk.vmdk' }, @{ Name = 'split.vmdk' }, @{ Name = 'disk.vhdx' }, @{ Name = 'disk.raw' },
        @{ Name = 'stream.vmdk' }, @{ Name = 'old.qcow2' }, @{ Name = 'disk.vdi' }, @{ Name = 'disk.vhd' },
        # qemu-img probes a fixed VHD as raw (its footer is at the end); it is told the format.
        @{ Name = 'fixed.vhd'; Qemu = @('-f', 'vpc') }
    ) {
        param($Name, $Qemu)
        $path = Join-Path $script:Root $Name
        $qemu = qemu-img info --output=json @Qemu $path | Out-String | ConvertFrom-Json -AsHashtable
        $ours = Get-VDisk $path -AsQemuJson | ConvertFrom-Json -AsHashtable
        Compare-Json $qemu $ours | Should -BeNullOrEmpty
    }
}

Describe 'Progress' {
    BeforeAll {
        Push-Location TestDrive:
        [System.IO.File]::WriteAllBytes((Join-Path $script:Root 'source.raw'), (New-TestBytes 48MB 5))
    }
    AfterAll { Pop-Location }

    It 'writes a new record per update naming the operation, bytes of the total and the time left' {
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript("Import-Module '$script:Module'; Set-Location -LiteralPath '$script:Root'; Convert-VDisk source.raw out.qcow2 -Compress").Invoke()
            $shell.Streams.Error | Should -BeNullOrEmpty
            $records = @($shell.Streams.Progress)
        }
        finally { $shell.Dispose() }
        $working = @($records | Where-Object RecordType -eq 'Processing')
        $working.Count | Should -BeGreaterThan 1
        for ($i = 1; $i -lt $working.Count; $i++) { [object]::ReferenceEquals($working[$i], $working[$i - 1]) | Should -BeFalse }
        $working | ForEach-Object { $_.Activity | Should -Be 'Convert-VDisk source.raw -> out.qcow2' }
        $working[-1].StatusDescription | Should -Match ': 48 MiB of 48 MiB$'
        $working[-1].SecondsRemaining | Should -Be 0
        $working[0].StatusDescription | Should -Match ': [\d.]+ (B|KiB|MiB) of 48 MiB$'
        ($records | Where-Object RecordType -eq 'Completed') | Should -Not -BeNullOrEmpty
    }
}

Describe '-Verbose' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f qcow2 gold.qcow2 16M
        qemu-img create -q -f qcow2 -b gold.qcow2 -F qcow2 user.qcow2
    }
    AfterAll { Pop-Location }

    It 'reports the probed format, each layer, the options written, the bytes and the time' {
        $verbose = @(Convert-VDisk user.qcow2 shipped.vmdk -Subformat streamOptimized -Verbose 4>&1 | ForEach-Object Message)
        $verbose | Should -Contain "Layer 0: '$(Join-Path $script:Root 'user.qcow2')' is qcow2 (format probed), Differencing, 16 MiB"
        $verbose | Should -Contain "Layer 1: '$(Join-Path $script:Root 'gold.qcow2')' is qcow2 (backing file), Dynamic, 16 MiB"
        ($verbose | Where-Object { $_ -like "Wrote '*shipped.vmdk': vmdk streamOptimized, Dynamic, 16 MiB, cluster 64 KiB, *create-type=streamOptimized*" }) | Should -Not -BeNullOrEmpty
        ($verbose | Where-Object { $_ -match '^Convert-VDisk user\.qcow2 -> shipped\.vmdk: 16 MiB of 16 MiB processed in \d+\.\d s$' }) | Should -Not -BeNullOrEmpty
        (qemu-img info --output=json shipped.vmdk | ConvertFrom-Json).'format-specific'.data.'create-type' | Should -Be 'streamOptimized'
    }
}

Describe 'WhatIf and confirmation texts' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f qcow2 parent.qcow2 16M
        qemu-img create -q -f qcow2 -b parent.qcow2 -F qcow2 child.qcow2
        qemu-img create -q -f qcow2 one.qcow2 8M
        qemu-img create -q -f qcow2 two.qcow2 8M
    }
    AfterAll { Pop-Location }

    It 'names the parent in commit, the subformat in convert and the resulting size in resize' {
        $text = Invoke-Child "Invoke-VDiskCommit child.qcow2 -WhatIf; Convert-VDisk child.qcow2 out.vmdk -Subformat streamOptimized -WhatIf; Resize-VDisk parent.qcow2 +16M -WhatIf"
        $text | Should -Match ([regex]::Escape("Commit its changes into '$(Join-Path $script:Root 'parent.qcow2')'"))
        $text | Should -Match 'to vmdk streamOptimized'
        $text | Should -Match 'Resize from 16 MiB to 32 MiB \(33554432 bytes\)'
        Test-Path out.vmdk | Should -BeFalse
    }

    It 'offers Yes to All when shrinking a pipeline of images' {
        $text = Invoke-Child "`$ConfirmPreference = 'None'; Get-ChildItem one.qcow2, two.qcow2 | Resize-VDisk -Size 4M -Shrink" "A"
        $text | Should -Match '\[A\] Yes to All'
        ([regex]::Matches($text, 'Shrink virtual disk')).Count | Should -Be 1
        foreach ($name in 'one.qcow2', 'two.qcow2') { (qemu-img info --output=json $name | ConvertFrom-Json).'virtual-size' | Should -Be 4MB }
    }
}

Describe 'Contradictory parameters are refused before anything is written' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path base.qcow2 -SizeBytes 8MB | Out-Null
        New-VDisk -Path taken.vhdx -SizeBytes 8MB | Out-Null
    }
    AfterAll { Pop-Location }

    It 'refuses -Format qcow2 into a .vhdx, even where the file exists' {
        New-VDisk -Path y.vhdx -Format qcow2 -SizeBytes 8MB -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption,*'
        $e[0].ToString() | Should -BeLike '*contradicts the extension*Leave out -Format*'
        Test-Path y.vhdx | Should -BeFalse
        New-VDisk -Path taken.vhdx -Format qcow2 -SizeBytes 8MB -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption,*'
    }

    It 'still writes qcow2 into a .img, as qemu-img users do' {
        New-VDisk -Path vm.img -Format qcow2 -SizeBytes 8MB | Out-Null
        (qemu-img info --output=json vm.img | ConvertFrom-Json).format | Should -Be 'qcow2'
    }

    It 'refuses -Subformat streamOptimized to a VHDX and to qcow2' {
        Convert-VDisk base.qcow2 x.vhdx -Subformat streamOptimized -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption,*'
        $e[0].ToString() | Should -BeLike '*subformat*streamOptimized*'
        Convert-VDisk base.qcow2 x.qcow2 -Subformat streamOptimized -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].ToString() | Should -BeLike '*qcow2 images have no subformat*Leave out -Subformat*'
        Test-Path x.vhdx, x.qcow2 | Should -Be @($false, $false)
    }

    It 'takes -Subformat fixed for a VHDX as qemu-img -o subformat=fixed does' {
        Convert-VDisk base.qcow2 fixed.vhdx -Subformat fixed
        (Get-Item fixed.vhdx).Length | Should -BeGreaterOrEqual 8MB
        qemu-img check -q fixed.vhdx
        $LASTEXITCODE | Should -Be 0
    }

    It 'refuses -Type Fixed with -ParentPath, before the existing-file check' {
        New-VDisk -Path taken.vhdx -Type Fixed -ParentPath base.qcow2 -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption,*'
        $e[0].ToString() | Should -BeLike '*differencing image, not a fixed one*'
    }
}

Describe 'Error advice names the switch of the cmdlet being run' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path disk.qcow2 -SizeBytes 8MB | Out-Null
        New-VDisk -Path there.qcow2 -SizeBytes 8MB | Out-Null
    }
    AfterAll { Pop-Location }

    It 'Resize-VDisk advises -Shrink, about the file' {
        Resize-VDisk disk.qcow2 4MB -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption,*'
        $e[0].ToString() | Should -BeLike '*discards data. Use -Shrink to allow it.'
        $e[0].Exception.Message | Should -Not -Match ' -[A-Z][a-z]'
        $e[0].TargetObject | Should -Be (Join-Path $script:Root 'disk.qcow2')
    }

    It '<Command> advises -Force for an existing output, and keeps the id VDisk.FileExists' -TestCases @(
        @{ Command = 'New-VDisk'; Run = { New-VDisk -Path there.qcow2 -SizeBytes 1MB -ErrorVariable e -ErrorAction SilentlyContinue; $e } }
        @{ Command = 'Convert-VDisk'; Run = { Convert-VDisk disk.qcow2 there.qcow2 -ErrorVariable e -ErrorAction SilentlyContinue; $e } }
        @{ Command = 'Copy-VDiskData'; Run = { Copy-VDiskData disk.qcow2 there.qcow2 -ErrorVariable e -ErrorAction SilentlyContinue; $e } }
    ) {
        param($Command, $Run)
        $e = & $Run
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.FileExists,*'
        $e[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        $e[0].ToString() | Should -BeLike '*already exists. Use -Force to overwrite it.'
        $e[0].TargetObject | Should -Be (Join-Path $script:Root 'there.qcow2')
    }

    It 'Copy-VDiskData advises its -DestinationFormat, New-VDisk its -Format' {
        Copy-VDiskData disk.qcow2 out.weird -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].ToString() | Should -BeLike '*Name the format with -DestinationFormat.'
        New-VDisk out.weird -SizeBytes 1MB -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].ToString() | Should -BeLike '*Name the format with -Format.'
    }

    It 'gives no advice where the cmdlet has no such switch' {
        [VDiskPS.ErrorMessages]::Advice('OutputExists', [Func[string, string]] { param($p) $null }) | Should -BeNullOrEmpty
        [VDiskPS.ErrorMessages]::Advice('OutputExists', [Func[string, string]] { param($p) $p }) | Should -Be 'Use -Force to overwrite it.'
    }

    It 'keeps the ids and categories of the error table' -TestCases @(
        @{ Type = 'ImageCorruptException'; Arguments = @('f', 'x', 1L, 'bad', $null); Id = 'VDisk.CorruptImage'; Category = 'InvalidData' }
        @{ Type = 'ImageNotSupportedException'; Arguments = @('f', $null, $null, 'no'); Id = 'VDisk.NotSupported'; Category = 'NotImplemented' }
        @{ Type = 'ImageLockedException'; Arguments = @('f', 'busy', $false, $null); Id = 'VDisk.ImageInUse'; Category = 'ResourceBusy' }
        @{ Type = 'ImageChainException'; Arguments = @('f', 'backing', 'missing', $null); Id = 'VDisk.BrokenChain'; Category = 'ObjectNotFound' }
    ) {
        param($Type, $Arguments, $Id, $Category)
        $exception = New-Object "VDiskPS.Formats.$Type" -ArgumentList $Arguments
        $entry = [VDiskPS.ErrorMessages]::Of([VDiskPS.ErrorMessages]::Classify($exception))
        $entry.Item1 | Should -Be $Id
        "$($entry.Item2)" | Should -Be $Category
    }
}

Describe 'TargetObject is the file the error is about' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path good.qcow2 -SizeBytes 8MB | Out-Null
        Set-Content -Path bad.qcow2 -Value ('QFI' + [char]0xfb + ('x' * 600)) -NoNewline
    }
    AfterAll { Pop-Location }

    It 'is the damaged source of Sync-VDisk, not its destination' {
        Sync-VDisk -Path bad.qcow2 -Destination good.qcow2 -ErrorVariable e -ErrorAction SilentlyContinue -Confirm:$false
        $e[0].TargetObject | Should -Be (Join-Path $script:Root 'bad.qcow2')
    }

    It 'is the damaged difference image of Compare-VDisk, not the reference' {
        Compare-VDisk good.qcow2 bad.qcow2 -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].TargetObject | Should -Be (Join-Path $script:Root 'bad.qcow2')
    }
}

Describe 'Tab completion' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f qcow2 vm.qcow2 16M
        qemu-img snapshot -c before-patch vm.qcow2
        qemu-img snapshot -c after-patch vm.qcow2
        qemu-img bitmap --add vm.qcow2 nightly
        qemu-img bitmap --add vm.qcow2 weekly
        qemu-img create -q -f qcow2 other.qcow2 16M
        qemu-img bitmap --add other.qcow2 foreign
        qemu-img create -q -f vmdk disk.vmdk 16M

        function Get-Completion([string] $Line) {
            @((TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches.CompletionText)
        }

        # The line as the first completion leaves it.
        function Get-Completed([string] $Line) {
            $result = TabExpansion2 -inputScript $Line -cursorColumn $Line.Length
            $Line.Substring(0, $result.ReplacementIndex) + $result.CompletionMatches[0].CompletionText + $Line.Substring($result.ReplacementIndex + $result.ReplacementLength)
        }
    }
    AfterAll { Pop-Location }

    It 'completes -Subformat with the VMDK create types, and dynamic/fixed for a VHDX' {
        Get-Completion 'Convert-VDisk vm.qcow2 x.vmdk -Subformat stream' | Should -Be @('streamOptimized')
        Get-Completion 'Convert-VDisk vm.qcow2 x.vhdx -Subformat ' | Should -Be @('dynamic', 'fixed')
        Get-Completion 'New-VDisk x.vmdk -Subformat ' | Should -Contain 'monolithicSparse'
    }

    It 'completes -Mode with the modes each cmdlet takes' {
        Get-Completion 'Repair-VDisk vm.qcow2 -Mode ' | Sort-Object | Should -Be @('All', 'Leaks')
        Get-Completion 'Optimize-VDisk vm.qcow2 -Mode ' | Sort-Object | Should -Be @('Full', 'Pretrimmed', 'Prezeroed', 'Quick', 'Retrim')
    }

    It 'completes snapshot names from the image in -Path' {
        Get-Completion 'Get-VDiskSnapshot -Path vm.qcow2 -Name ' | Should -Be @('before-patch', 'after-patch')
        Get-Completion 'Restore-VDiskSnapshot vm.qcow2 -Name aft' | Should -Be @('after-patch')
        Get-Completion 'Remove-VDiskSnapshot -Path vm.qcow2 -Name b' | Should -Be @('before-patch')
        Get-Completion 'Convert-VDisk vm.qcow2 x.vmdk -Snapshot ' | Should -Be @('before-patch', 'after-patch')
    }

    It 'completes bitmap names from the image in -Path, and -SourceName from -SourcePath' {
        Get-Completion 'Remove-VDiskBitmap -Path vm.qcow2 -Name ' | Should -Be @('nightly', 'weekly')
        Get-Completion 'Get-VDiskBitmap vm.qcow2 -Name w' | Should -Be @('weekly')
        Get-Completion 'Merge-VDiskBitmap vm.qcow2 -Name nightly -SourcePath other.qcow2 -SourceName ' | Should -Be @('foreign')
    }

    It 'completes -Option keys from the option table of the format concerned' {
        Get-Completion 'New-VDisk x.qcow2 -SizeBytes 1GB -Option lazy' | Should -Be @('lazy_refcounts=')
        Get-Completed 'New-VDisk x.qcow2 -Option cluster_size=64k,lazy' | Should -Be 'New-VDisk x.qcow2 -Option cluster_size=64k,lazy_refcounts='
        Get-Completed "New-VDisk x.qcow2 -Option 'cluster_size=64k,lazy" | Should -Be "New-VDisk x.qcow2 -Option 'cluster_size=64k,lazy_refcounts="
        Get-Completion 'Convert-VDisk vm.qcow2 -Destination x.vmdk -Option adapter' | Should -Be @('adapter_type=')
        Get-Completion 'Set-VDisk -Path disk.vmdk -Option hw' | Should -Be @('hwversion=')
    }
}

Describe 'Snapshot and bitmap changes output with -PassThru only' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f qcow2 vm.qcow2 16M
    }
    AfterAll { Pop-Location }

    It 'Remove-VDiskSnapshot -PassThru outputs the snapshot it deleted' {
        qemu-img snapshot -c one vm.qcow2
        qemu-img snapshot -c two vm.qcow2
        Remove-VDiskSnapshot vm.qcow2 -Name one -Confirm:$false | Should -BeNullOrEmpty
        $removed = Remove-VDiskSnapshot vm.qcow2 -Name two -PassThru -Confirm:$false
        $removed.Name | Should -Be 'two'
        qemu-img snapshot -l vm.qcow2 | Out-String | Should -Not -Match '\btwo\b'
    }

    It '<Command> -PassThru outputs the bitmap as qemu-img then sees it' -TestCases @(
        @{ Command = 'Disable-VDiskBitmap'; Enabled = $false }
        @{ Command = 'Enable-VDiskBitmap'; Enabled = $true }
        @{ Command = 'Clear-VDiskBitmap'; Enabled = $true }
    ) {
        param($Command, $Enabled)
        if (-not (Get-VDiskBitmap vm.qcow2 -Name b1)) { qemu-img bitmap --add vm.qcow2 b1 }
        & $Command vm.qcow2 -Name b1 -Confirm:$false | Should -BeNullOrEmpty
        $bitmap = & $Command vm.qcow2 -Name b1 -PassThru -Confirm:$false
        $bitmap.Name | Should -Be 'b1'
        $bitmap.Enabled | Should -Be $Enabled
        $flags = ((qemu-img info --output=json vm.qcow2 | ConvertFrom-Json).'format-specific'.data.bitmaps | Where-Object name -eq 'b1').flags
        ($flags -contains 'auto') | Should -Be $Enabled
    }

    It 'Remove-VDiskBitmap -PassThru outputs the bitmap it removed' {
        $removed = Remove-VDiskBitmap vm.qcow2 -Name b1 -PassThru -Confirm:$false
        $removed.Name | Should -Be 'b1'
        (qemu-img info --output=json vm.qcow2 | ConvertFrom-Json).'format-specific'.data.bitmaps | Should -BeNullOrEmpty
    }
}

Describe 'Help' {
    It 'describes -DeleteSource, not -PassThru, under -DeleteSource' {
        $text = (Get-Help Convert-VDisk -Parameter DeleteSource).description.Text -join ' '
        $text | Should -BeLike '*compared with the source and found identical*'
        $text | Should -Not -Be ((Get-Help Convert-VDisk -Parameter PassThru).description.Text -join ' ')
    }

    It 'states the real default of <Cmdlet> -Mode' -TestCases @(
        @{ Cmdlet = 'Optimize-VDisk'; Default = 'Full for VHD, Quick for other formats' }
        @{ Cmdlet = 'Repair-VDisk'; Default = 'All' }
    ) {
        param($Cmdlet, $Default)
        (Get-Help $Cmdlet -Parameter Mode).defaultValue | Should -Be $Default
    }

    It 'has no example with a Windows drive or UNC path, which fails on Linux' {
        foreach ($command in Get-Command -Module VDiskPS) {
            foreach ($example in (Get-Help $command.Name -Examples).examples.example) {
                $example.code | Should -Not -Match '\b[A-Za-z]:\\|\\\\\w' -Because "$($command.Name): $($example.title)"
            }
        }
    }
}
