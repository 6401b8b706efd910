#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# Probing of formats the module does not implement, parent paths that qemu and libvhdi can follow,
# and broken chains, as a user meets them. qemu-img, qemu-io and vhdiinfo judge the results.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root
    # The pwsh of this session ($PSHOME's launcher; the process itself may be dotnet running pwsh.dll).
    $script:Pwsh = Join-Path $PSHOME ($(if ($IsWindows) { 'pwsh.exe' } else { 'pwsh' }))
    $script:Module = (Resolve-Path $script:ModulePath).Path

    # Paths of these helpers are relative to the current PowerShell location.
    # The value of one "Name : value" line of vhdiinfo's report.
    function Get-VhdiField([string] $Path, [string] $Name) {
        $line = vhdiinfo (Resolve-Path $Path).ProviderPath | Where-Object { $_ -match "^\s*$Name\s*:" } | Select-Object -First 1
        ($line -split ':', 2)[1].Trim()
    }

    # Runs a command in a fresh pwsh -NonInteractive, as a scheduled task does.
    function Invoke-NonInteractive([string] $Command) {
        $script = "Set-Location -LiteralPath '$script:Root'; Import-Module '$script:Module'; `$ErrorActionPreference = 'Stop'; $Command"
        $output = & $script:Pwsh -NonInteractive -NoProfile -Command $script 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output | Out-String) }
    }
}

Describe 'Images the module does not understand are never read as raw' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'refuses a LUKS2 container made by cryptsetup by name, and a VHD Set by its extension' {
        $path = Join-Path $script:Root 'luks2.img'
        [IO.File]::WriteAllBytes($path, [byte[]]::new(16MB))
        # Debian installs cryptsetup in /usr/sbin, which a non-root PATH may lack.
        $cryptsetup = (Get-Command cryptsetup -ErrorAction SilentlyContinue).Source ?? '/usr/sbin/cryptsetup'
        'pass' | & $cryptsetup luksFormat --type luks2 -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 $path
        $LASTEXITCODE | Should -Be 0
        [IO.File]::WriteAllBytes((Join-Path $script:Root 'shared.vhds'), [byte[]]::new(4096))
        $info = Get-VDisk luks2.img, shared.vhds -ErrorVariable failure -ErrorAction SilentlyContinue
        $info | Should -BeNullOrEmpty
        $failure.Count | Should -Be 2
        $failure | ForEach-Object { $_.FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*' }
        $failure[0].Exception.Message | Should -Match 'LUKS version 2 is not supported'
        $failure[1].Exception.Message | Should -Match 'VHD Set'
        Convert-VDisk luks2.img -Destination luks2.qcow2 -ErrorAction SilentlyContinue
        Test-Path luks2.qcow2 | Should -BeFalse
    }

    It 'names both the extension and the content when a <Name> is no such image' -TestCases @(
        @{ Name = 'notes.vhdx'; Content = "a text file`n"; Expected = 'not vhdx' }
        @{ Name = 'empty.qcow2'; Content = ''; Expected = 'empty, so it is not qcow2' }
    ) {
        param($Name, $Content, $Expected)
        [IO.File]::WriteAllText((Join-Path $script:Root $Name), $Content)
        Get-VDisk $Name -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.FormatMismatch*'
        $failure[0].Exception.Message | Should -Match ([regex]::Escape([IO.Path]::GetExtension($Name)))
        $failure[0].Exception.Message | Should -Match $Expected
    }

    It 'reads a file without signature or image extension as raw, as qemu-img does' {
        [IO.File]::WriteAllBytes((Join-Path $script:Root 'blob'), [byte[]]::new(64KB))
        (qemu-img info (Join-Path $script:Root 'blob')) -join "`n" | Should -Match 'file format: raw'
        $info = Get-VDisk blob -WarningVariable warnings
        $info.Format | Should -Be 'raw'
        $warnings | Should -BeNullOrEmpty
    }

    It 'warns when a raw file is smaller than one sector' {
        [IO.File]::WriteAllBytes((Join-Path $script:Root 'stub'), [byte[]]::new(100))
        $info = Get-VDisk stub -WarningVariable warnings -WarningAction SilentlyContinue
        $info.Format | Should -Be 'raw'
        $warnings.Count | Should -Be 1
        "$($warnings[0])" | Should -Match '100 bytes'
    }
}

Describe 'Parent paths that qemu and Hyper-V can follow' {
    BeforeEach {
        $script:Case = Join-Path $script:Root ([guid]::NewGuid().ToString('n'))
        New-Item -ItemType Directory -Path (Join-Path $script:Case 'base'), (Join-Path $script:Case 'ov') | Out-Null
        Push-Location $script:Case
    }
    AfterEach { Pop-Location }

    It 'records a backslash relative qcow2 parent so that qemu-img opens the chain' {
        New-VDisk base/golden.qcow2 -SizeBytes 4MB | Out-Null
        qemu-io -c 'write -P 0x5a 0 64k' (Join-Path $script:Case 'base/golden.qcow2') | Out-Null
        $child = New-VDisk ov/a.qcow2 -ParentPath .\base\golden.qcow2
        $child.BackingFile | Should -Be '../base/golden.qcow2'
        qemu-img info --backing-chain (Join-Path $script:Case 'ov/a.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0
        qemu-img compare (Join-Path $script:Case 'ov/a.qcow2') (Join-Path $script:Case 'base/golden.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'resolves a relative parent against the PowerShell location, not the child folder' {
        New-VDisk base/b.qcow2 -SizeBytes 4MB | Out-Null
        New-VDisk ov/a.qcow2 -ParentPath ./base/b.qcow2 | Out-Null
        $json = qemu-img info --output=json --backing-chain (Join-Path $script:Case 'ov/a.qcow2') | ConvertFrom-Json
        $json[1].filename | Should -Be (Join-Path $script:Case 'ov/../base/b.qcow2')
    }

    It 'keeps a chain that is moved together openable' {
        New-VDisk base/b.qcow2 -SizeBytes 4MB | Out-Null
        New-VDisk ov/a.qcow2 -ParentPath .\base\b.qcow2 | Out-Null
        New-Item -ItemType Directory moved | Out-Null
        Move-Item base, ov moved
        qemu-img info --backing-chain (Join-Path $script:Case 'moved/ov/a.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'records a backslash relative VMDK parent that qemu-img follows' {
        New-VDisk base/b.vmdk -SizeBytes 4MB | Out-Null
        New-VDisk ov/a.vmdk -ParentPath .\base\b.vmdk | Out-Null
        (Get-Content ov/a.vmdk -TotalCount 30) -join "`n" | Should -Match 'parentFileNameHint="../base/b.vmdk"'
        qemu-img compare (Join-Path $script:Case 'ov/a.vmdk') (Join-Path $script:Case 'base/b.vmdk') | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'records VHDX parent locators that libvhdi resolves' {
        New-VDisk base/b.vhdx -SizeBytes 4MB | Out-Null
        New-VDisk ov/a.vhdx -ParentPath .\base\b.vhdx | Out-Null
        Get-VhdiField "ov/a.vhdx" 'Parent filename' | Should -Be (Join-Path $script:Case 'base/b.vhdx')
        Get-VhdiField "ov/a.vhdx" 'Parent identifier' | Should -Be (Get-VhdiField "base/b.vhdx" 'Identifier')
    }

    It 'records VHD parent locators in the forms of the VHD specification' {
        New-VDisk base/b.vhd -SizeBytes 4MB | Out-Null
        New-VDisk ov/a.vhd -ParentPath .\base\b.vhd | Out-Null
        Get-VhdiField ov/a.vhd 'Parent filename' | Should -Be 'b.vhd'
        Get-VhdiField ov/a.vhd 'Parent identifier' | Should -Be (Get-VhdiField base/b.vhd 'Identifier')
        # No installed tool prints VHD parent locators: the W2ru and W2ku entries are read as UTF-16 text.
        $text = [Text.Encoding]::Unicode.GetString([IO.File]::ReadAllBytes((Join-Path $script:Case 'ov/a.vhd')))
        $text | Should -Match ([regex]::Escape('..\base\b.vhd'))
        $text | Should -Match ([regex]::Escape((Join-Path $script:Case 'base/b.vhd')))
    }

    It 'applies the same rules to Set-VDisk -ParentPath' {
        New-VDisk base/old.qcow2 -SizeBytes 4MB | Out-Null
        New-VDisk base/new.qcow2 -SizeBytes 4MB | Out-Null
        New-VDisk ov/a.qcow2 -ParentPath ./base/old.qcow2 | Out-Null
        Set-VDisk ov/a.qcow2 -ParentPath .\base\new.qcow2 -Confirm:$false
        (Get-VDisk ov/a.qcow2).BackingFile | Should -Be '../base/new.qcow2'
        $json = qemu-img info --output=json --backing-chain (Join-Path $script:Case 'ov/a.qcow2') | ConvertFrom-Json
        $json[1].filename | Should -Be (Join-Path $script:Case 'ov/../base/new.qcow2')
    }

    It 'applies the same rules to Convert-VDisk -ParentPath' {
        New-VDisk base/b.qcow2 -SizeBytes 4MB | Out-Null
        Copy-Item base/b.qcow2 ov/full.qcow2
        qemu-io -c 'write -P 0x33 1M 64k' (Join-Path $script:Case 'ov/full.qcow2') | Out-Null
        Convert-VDisk ov/full.qcow2 -Destination ov/delta.qcow2 -ParentPath .\base\b.qcow2
        (Get-VDisk ov/delta.qcow2).BackingFile | Should -Be '../base/b.qcow2'
        qemu-img compare (Join-Path $script:Case 'ov/delta.qcow2') (Join-Path $script:Case 'ov/full.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0
    }
}

Describe 'Broken chains are reported, and fixable' {
    BeforeEach {
        $script:Case = Join-Path $script:Root ([guid]::NewGuid().ToString('n'))
        New-Item -ItemType Directory -Path $script:Case | Out-Null
        Push-Location $script:Case
    }
    AfterEach { Pop-Location }

    It 'fails Test-VDisk when the backing file is missing, as qemu-img check does' {
        New-VDisk base.qcow2 -SizeBytes 4MB | Out-Null
        New-VDisk child.qcow2 -ParentPath base.qcow2 | Out-Null
        Remove-Item base.qcow2
        qemu-img check (Join-Path $script:Case 'child.qcow2') 2>&1 | Out-Null
        $LASTEXITCODE | Should -Be 1
        Test-VDisk child.qcow2 | Should -BeFalse
        $detail = Test-VDisk child.qcow2 -Detailed
        $detail.IsValid | Should -BeFalse
        ($detail.Messages -join "`n") | Should -Match 'does not exist'
    }

    It 'tells how to open a VHDX whose parent changed, and re-pins it with -IgnoreIdMismatch' {
        New-VDisk base.vhdx -SizeBytes 4MB | Out-Null
        New-VDisk child.vhdx -ParentPath base.vhdx | Out-Null
        New-VDisk other.raw -SizeBytes 4MB | Out-Null
        Write-Bytes "other.raw" 0 (New-TestBytes 4096 7)
        Sync-VDisk other.raw -Destination base.vhdx | Out-Null

        Get-VDisk child.vhdx -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.ParentIdMismatch*'
        "$failure" | Should -Match '-IgnoreIdMismatch'
        Test-VDisk child.vhdx | Should -BeFalse
        (Get-VDisk child.vhdx -IgnoreIdMismatch).ParentPath | Should -Not -BeNullOrEmpty
        Get-VhdiField "child.vhdx" 'Parent identifier' | Should -Not -Be (Get-VhdiField "base.vhdx" 'Identifier')

        Set-VDisk child.vhdx -ParentPath base.vhdx -IgnoreIdMismatch -Confirm:$false
        Test-VDisk child.vhdx | Should -BeTrue
        Get-VhdiField "child.vhdx" 'Parent identifier' | Should -Be (Get-VhdiField "base.vhdx" 'Identifier')
    }

    It 're-pins a VMDK delta whose parent changed so that qemu-img reads it again' {
        New-VDisk base.vmdk -SizeBytes 4MB | Out-Null
        New-VDisk child.vmdk -ParentPath base.vmdk | Out-Null
        qemu-io -c 'write -P 0x11 0 4k' (Join-Path $script:Case 'base.vmdk') | Out-Null
        qemu-img compare (Join-Path $script:Case 'child.vmdk') (Join-Path $script:Case 'base.vmdk') 2>&1 | Out-Null
        $LASTEXITCODE | Should -Not -Be 0
        Test-VDisk child.vmdk | Should -BeFalse
        Compare-VDisk child.vmdk base.vmdk -IgnoreIdMismatch -Quiet | Should -BeTrue
        Get-VDiskMap child.vmdk -ErrorVariable failure -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.ParentIdMismatch*'
        (Get-VDiskMap child.vmdk -IgnoreIdMismatch | Where-Object Data).Count | Should -BeGreaterThan 0

        Set-VDisk child.vmdk -ParentPath base.vmdk -IgnoreIdMismatch -Confirm:$false
        qemu-img compare (Join-Path $script:Case 'child.vmdk') (Join-Path $script:Case 'base.vmdk') | Out-Null
        $LASTEXITCODE | Should -Be 0
        Test-VDisk child.vmdk | Should -BeTrue
    }

    It 'flattens in a non-interactive session with -Confirm:$false' {
        New-VDisk base.qcow2 -SizeBytes 4MB | Out-Null
        qemu-io -c 'write -P 0x42 0 1M' (Join-Path $script:Case 'base.qcow2') | Out-Null
        New-VDisk child.qcow2 -ParentPath base.qcow2 | Out-Null
        $run = Invoke-NonInteractive "Set-Location '$script:Case'; Set-VDisk child.qcow2 -ParentPath '' -Confirm:`$false"
        $run.Output | Should -BeNullOrEmpty
        $run.ExitCode | Should -Be 0
        $json = qemu-img info --output=json (Join-Path $script:Case 'child.qcow2') | ConvertFrom-Json
        $json.'backing-filename' | Should -BeNullOrEmpty
        qemu-img compare (Join-Path $script:Case 'child.qcow2') (Join-Path $script:Case 'base.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'shrinks in a non-interactive session with -Confirm:$false' {
        New-VDisk disk.qcow2 -SizeBytes 8MB | Out-Null
        $run = Invoke-NonInteractive "Set-Location '$script:Case'; Resize-VDisk disk.qcow2 -SizeBytes 4MB -Shrink -Confirm:`$false"
        $run.Output | Should -BeNullOrEmpty
        $run.ExitCode | Should -Be 0
        (qemu-img info --output=json (Join-Path $script:Case 'disk.qcow2') | ConvertFrom-Json).'virtual-size' | Should -Be 4MB
    }
}
