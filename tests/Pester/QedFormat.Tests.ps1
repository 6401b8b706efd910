#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# QED images made by qemu-img/qemu-io, read and written through the cmdlets; every answer is judged
# by qemu-img (info, map, check, compare) on the same files.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root

    function New-QemuQed([string] $Name, [string] $Size = '4M') {
        $path = Join-Path $script:Root $Name
        qemu-img create -q -f qed $path $Size
        qemu-io -f qed -c 'write -P 0x11 0 64k' -c 'write -z 1M 128k' -c 'write -P 0x22 2M 100k' $path | Out-Null
        $path
    }

    function Get-Features([string] $Path) {
        [uint64](od -An -t u8 -j 16 -N 8 $Path).Trim()
    }
}

Describe 'QED images' {
    BeforeEach { Push-Location TestDrive: }
    AfterEach { Pop-Location }

    It 'Get-VDisk describes a qemu-made image as qemu-img info does' {
        $path = New-QemuQed 'info.qed'
        $qemu = qemu-img info --output=json $path | ConvertFrom-Json
        $info = Get-VDisk info.qed
        $info.Format | Should -Be 'qed'
        $info.Size | Should -Be $qemu.'virtual-size'
        $info.ClusterSize | Should -Be $qemu.'cluster-size'
        $info.Dirty | Should -BeFalse
    }

    It 'Get-VDisk and Test-VDisk report an image left unclean, and reading it changes nothing' {
        $path = Join-Path $script:Root 'unclean.qed'
        qemu-img create -q -f qed $path 4M
        qemu-io -f qed -c 'write -P 0x33 0 64k' -c abort $path 2>$null | Out-Null
        (Get-Features $path) -band 2 | Should -Be 2
        $hash = (Get-FileHash $path).Hash
        (Get-VDisk unclean.qed).Dirty | Should -BeTrue
        $result = Test-VDisk unclean.qed -Detailed
        $result.IsValid | Should -BeTrue
        $result.Messages -join "`n" | Should -Match 'not closed cleanly'
        qemu-img check -f qed $path | Out-Null
        $LASTEXITCODE | Should -Be 0
        (Get-FileHash $path).Hash | Should -Be $hash
        # A repair clears the flag, as qemu-img check -r does.
        Repair-VDisk unclean.qed -Mode All -Confirm:$false | Out-Null
        (Get-Features $path) -band 2 | Should -Be 0
        (Get-VDisk unclean.qed).Dirty | Should -BeFalse
    }

    It 'Get-VDiskMap reports data, zero clusters and holes as qemu-img map' {
        $path = New-QemuQed 'map.qed'
        $qemu = (qemu-img map --output=json -f qed $path) -join "`n" | ConvertFrom-Json
        $ours = @(Get-VDiskMap map.qed)
        $ours.Count | Should -Be $qemu.Count
        for ($i = 0; $i -lt $qemu.Count; $i++) {
            $ours[$i].Start | Should -Be $qemu[$i].start
            $ours[$i].Length | Should -Be $qemu[$i].length
            $ours[$i].Data | Should -Be $qemu[$i].data
            $ours[$i].Zero | Should -Be $qemu[$i].zero
        }
    }

    It 'Test-VDisk counts the leaked clusters qemu-img check finds, and Repair-VDisk returns them' {
        $path = New-QemuQed 'leak.qed'
        $stream = [IO.File]::Open($path, 'Open', 'ReadWrite')
        try { $stream.SetLength($stream.Length + 2 * 65536) } finally { $stream.Dispose() }
        qemu-img check -f qed $path | Out-Null
        $LASTEXITCODE | Should -Be 3
        (Test-VDisk leak.qed -Detailed).Leaks | Should -Be 2
        Test-VDisk leak.qed | Should -BeTrue
        (Repair-VDisk leak.qed -Mode Leaks -Confirm:$false).LeaksFixed | Should -Be 2
        qemu-img check -f qed $path | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'Measure-VDisk gives the size of the file qemu-img writes for full data' {
        $raw = Join-Path $script:Root 'full.raw'
        [IO.File]::WriteAllBytes($raw, (New-TestBytes (2MB) 5))
        $qed = Join-Path $script:Root 'full.qed'
        qemu-img convert -f raw -O qed $raw $qed
        $measure = Measure-VDisk full.raw -Format qed
        $measure.Required | Should -Be (Get-Item $qed).Length
        $measure.FullyAllocated | Should -Be (Get-Item $qed).Length
    }

    It 'Compare-VDisk agrees with qemu-img compare' {
        $path = New-QemuQed 'cmp.qed'
        $raw = Join-Path $script:Root 'cmp.raw'
        qemu-img convert -f qed -O raw $path $raw
        Compare-VDisk cmp.qed cmp.raw -Quiet | Should -BeTrue
        qemu-io -f raw -c 'write -P 0x99 3M 512' $raw | Out-Null
        Compare-VDisk cmp.qed cmp.raw -Quiet | Should -BeFalse
        qemu-img compare -f qed -F raw $path $raw | Out-Null
        $LASTEXITCODE | Should -Be 1
    }

    It 'Convert-VDisk turns a QED overlay into qcow2 and a qcow2 into QED, judged by qemu-img' {
        $base = Join-Path $script:Root 'base.qcow2'
        qemu-img create -q -f qcow2 $base 4M
        qemu-io -f qcow2 -c 'write -P 0x55 0 4M' $base | Out-Null
        $child = Join-Path $script:Root 'child.qed'
        qemu-img create -q -f qed -b base.qcow2 -F qcow2 $child 4M
        qemu-io -f qed -c 'write -P 0x66 100k 8k' -c 'write -z 1M 64k' $child | Out-Null

        # QED records no parent format but plain data: the qcow2 parent is probed, as qemu does.
        Convert-VDisk child.qed -Destination flat.qcow2 | Out-Null
        qemu-img compare -f qed -F qcow2 $child (Join-Path $script:Root 'flat.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0

        Convert-VDisk flat.qcow2 -Destination back.qed | Out-Null
        $back = Join-Path $script:Root 'back.qed'
        qemu-img check -f qed $back | Out-Null
        $LASTEXITCODE | Should -Be 0
        qemu-img compare -f qcow2 -F qed (Join-Path $script:Root 'flat.qcow2') $back | Out-Null
        $LASTEXITCODE | Should -Be 0
        (Get-VDisk back.qed).Format | Should -Be 'qed'
    }

    It 'New-VDisk makes a QED overlay of a raw parent that records it as plain data' {
        $base = Join-Path $script:Root 'p.raw'
        [IO.File]::WriteAllBytes($base, (New-TestBytes (1MB) 7))
        New-VDisk -Path o.qed -ParentPath p.raw -ParentFormat raw | Out-Null
        $qemu = qemu-img info --output=json (Join-Path $script:Root 'o.qed') | ConvertFrom-Json
        $qemu.'backing-filename' | Should -Be 'p.raw'
        $qemu.'backing-filename-format' | Should -Be 'raw'
        (Get-Features (Join-Path $script:Root 'o.qed')) -band 4 | Should -Be 4
        (Get-VDisk o.qed).ParentFormat | Should -Be 'raw'
        qemu-img compare -f qed -F raw (Join-Path $script:Root 'o.qed') $base | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'refuses an image with an unknown incompatible feature, naming the bit' {
        $path = New-QemuQed 'future.qed'
        Write-Bytes $path 16 ([BitConverter]::GetBytes([uint64]1 -shl 6))
        Get-VDisk future.qed -ErrorVariable failure -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
        $failure[0].Exception.Message | Should -Match 'bit 6'
        qemu-img info -f qed $path 2>$null | Out-Null
        $LASTEXITCODE | Should -Not -Be 0
    }
}
