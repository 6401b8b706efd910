#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# Parallels images (read, written and checked) and Bochs growing images (read-only), as a user meets
# them. qemu-img makes the Parallels images and judges every result; QEMU cannot create Bochs images,
# so one is built from bximage's layout and qemu-img first reads it as the content it was built from.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root

    function Get-RawBytes([string] $Path, [string] $Format) {
        $raw = Join-Path $script:Root ([guid]::NewGuid().ToString('N') + '.raw')
        qemu-img convert -f $Format -O raw (Join-Path $script:Root $Path) $raw
        $bytes = [IO.File]::ReadAllBytes($raw)
        Remove-Item $raw
        , $bytes
    }

    # A 1 MiB Bochs growing redolog (version 2): 64 KiB extents, a 16-entry catalog; extent 0 stores
    # sectors 0-7 and extent 5 sectors 2-3, extent 5 first in the file. Absent sectors hold 0xEE.
    function New-BochsImage([string] $Path, [byte[]] $First, [byte[]] $Second) {
        $header = [byte[]]::new(512)
        [Text.Encoding]::ASCII.GetBytes('Bochs Virtual HD Image').CopyTo($header, 0)
        [Text.Encoding]::ASCII.GetBytes('Redolog').CopyTo($header, 32)
        [Text.Encoding]::ASCII.GetBytes('Growing').CopyTo($header, 48)
        [BitConverter]::GetBytes([uint32]0x20000).CopyTo($header, 64)
        [BitConverter]::GetBytes([uint32]512).CopyTo($header, 68)
        [BitConverter]::GetBytes([uint32]16).CopyTo($header, 72)
        [BitConverter]::GetBytes([uint32]16).CopyTo($header, 76)
        [BitConverter]::GetBytes([uint32]64KB).CopyTo($header, 80)
        [BitConverter]::GetBytes([uint64]1MB).CopyTo($header, 88)
        $catalog = [byte[]]::new(64)
        for ($i = 0; $i -lt 16; $i++) { [BitConverter]::GetBytes([uint32]::MaxValue).CopyTo($catalog, $i * 4) }
        [BitConverter]::GetBytes([uint32]1).CopyTo($catalog, 0)
        [BitConverter]::GetBytes([uint32]0).CopyTo($catalog, 20)
        $extent5 = [byte[]]::new(512 + 64KB)
        $extent0 = [byte[]]::new(512 + 64KB)
        for ($i = 512; $i -lt $extent5.Length; $i++) { $extent5[$i] = 0xEE; $extent0[$i] = 0xEE }
        $extent5[0] = 0x0C
        $Second.CopyTo($extent5, 512 + 1024)
        $extent0[0] = 0xFF
        $First.CopyTo($extent0, 512)
        [IO.File]::WriteAllBytes((Join-Path $script:Root $Path), [byte[]]($header + $catalog + $extent5 + $extent0))
    }
}

Describe 'Parallels images' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f parallels -o cluster_size=64k (Join-Path $script:Root 'vm.hds') 4M
        qemu-io -f parallels -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 300k' -c 'write -P 0x33 4095k 1k' (Join-Path $script:Root 'vm.hds') | Out-Null
    }
    AfterAll { Pop-Location }

    It 'Get-VDisk reports what qemu-img info does' {
        $info = Get-VDisk vm.hds
        $qemu = qemu-img info --output=json -f parallels (Join-Path $script:Root 'vm.hds') | ConvertFrom-Json
        $info.Format | Should -Be 'parallels'
        $info.Size | Should -Be $qemu.'virtual-size'
        $info.FileSize | Should -Be (Get-Item vm.hds).Length
    }

    It 'Get-VDiskMap finds the clusters qemu-img map does' {
        $ours = (Get-VDiskMap vm.hds | Where-Object Data | Measure-Object Length -Sum).Sum
        $theirs = ((qemu-img map --output=json -f parallels (Join-Path $script:Root 'vm.hds')) -join "`n" | ConvertFrom-Json | Where-Object data | Measure-Object length -Sum).Sum
        $ours | Should -Be $theirs
        $ours | Should -Be (64KB * 7)
    }

    It 'Test-VDisk and Repair-VDisk find and reclaim a leak as qemu-img check does' {
        Copy-Item vm.hds leak.hds
        $fs = [IO.File]::OpenWrite((Join-Path $script:Root 'leak.hds'))
        try { $fs.SetLength($fs.Length + 100KB) } finally { $fs.Dispose() }
        qemu-img check -f parallels (Join-Path $script:Root 'leak.hds') | Out-Null
        $LASTEXITCODE | Should -Be 3
        (Test-VDisk leak.hds -Detailed).Leaks | Should -Be 2
        (Repair-VDisk leak.hds -Mode Leaks -Confirm:$false).LeaksFixed | Should -Be 2
        qemu-img check -f parallels (Join-Path $script:Root 'leak.hds') | Out-Null
        $LASTEXITCODE | Should -Be 0
        Test-VDisk leak.hds | Should -BeTrue
    }

    It 'repairs an image left open by a writer, which qemu then opens for writing' {
        Copy-Item vm.hds open.hds
        Write-Bytes open.hds 44 ([BitConverter]::GetBytes([uint32]0x746F6E59))
        Test-VDisk open.hds | Should -BeFalse
        (Repair-VDisk open.hds -Confirm:$false).CorruptionsFixed | Should -Be 1
        qemu-io -f parallels -c 'write -P 0x44 2M 4k' (Join-Path $script:Root 'open.hds') | Out-Null
        $LASTEXITCODE | Should -Be 0
        qemu-img check -f parallels (Join-Path $script:Root 'open.hds') | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'Measure-VDisk of the image agrees with qemu-img measure' {
        $ours = Measure-VDisk vm.hds -Format qcow2
        $theirs = qemu-img measure --output=json -f parallels -O qcow2 (Join-Path $script:Root 'vm.hds') | ConvertFrom-Json
        $ours.Required | Should -Be $theirs.required
        $ours.FullyAllocated | Should -Be $theirs.'fully-allocated'
        # qemu-img measure does not support parallels as a target: 1 MiB header cluster plus 10 MiB of clusters.
        (Measure-VDisk -SizeBytes 10MB -Format parallels).FullyAllocated | Should -Be 11MB
    }

    It 'Convert-VDisk goes to qcow2 and back, judged by qemu-img compare and check' {
        Convert-VDisk vm.hds -Destination vm.qcow2 | Out-Null
        qemu-img compare -f parallels -F qcow2 (Join-Path $script:Root 'vm.hds') (Join-Path $script:Root 'vm.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0
        Convert-VDisk vm.qcow2 -Destination back.hds | Out-Null
        (Get-VDisk back.hds).Format | Should -Be 'parallels'
        qemu-img compare -f qcow2 -F parallels (Join-Path $script:Root 'vm.qcow2') (Join-Path $script:Root 'back.hds') | Out-Null
        $LASTEXITCODE | Should -Be 0
        qemu-img check -f parallels (Join-Path $script:Root 'back.hds') | Out-Null
        $LASTEXITCODE | Should -Be 0
        Compare-VDisk vm.hds back.hds -Quiet | Should -BeTrue
    }

    It 'New-VDisk makes the file qemu-img create makes' {
        New-VDisk -Path new.hds -SizeBytes 4MB -Option @{ cluster_size = '64k' } | Out-Null
        qemu-img create -q -f parallels -o cluster_size=64k (Join-Path $script:Root 'qemu.hds') 4M
        (Get-FileHash new.hds).Hash | Should -Be (Get-FileHash qemu.hds).Hash
    }

    It 'refuses preallocation, which Parallels images cannot have' {
        New-VDisk -Path pre.hds -SizeBytes 4MB -Option @{ preallocation = 'full' } -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption*'
        Test-Path pre.hds | Should -BeFalse
    }
}

Describe 'Bochs images' {
    BeforeAll {
        Push-Location TestDrive:
        $script:First = New-TestBytes 4096 1
        $script:Second = New-TestBytes 1024 2
        New-BochsImage disk.bochs $script:First $script:Second
        $script:Expected = [byte[]]::new(1MB)
        $script:First.CopyTo($script:Expected, 0)
        $script:Second.CopyTo($script:Expected, 5 * 64KB + 1024)
        [IO.File]::WriteAllBytes((Join-Path $script:Root 'expected.raw'), $script:Expected)
    }
    AfterAll { Pop-Location }

    It 'is read by qemu-img as the content it was built from' {
        $bytes = Get-RawBytes disk.bochs bochs
        [Linq.Enumerable]::SequenceEqual($bytes, $script:Expected) | Should -BeTrue
    }

    It 'Get-VDisk, Test-VDisk and Compare-VDisk read it as qemu-img does' {
        $info = Get-VDisk disk.bochs
        $info.Format | Should -Be 'bochs'
        $info.Size | Should -Be 1MB
        Test-VDisk disk.bochs | Should -BeTrue
        Compare-VDisk disk.bochs expected.raw -Quiet | Should -BeTrue
    }

    It 'Get-VDiskMap shows only the sectors the bitmaps mark present' {
        $data = Get-VDiskMap disk.bochs | Where-Object Data
        ($data | Measure-Object Length -Sum).Sum | Should -Be (4096 + 1024)
        ($data | ForEach-Object { $_.Start }) | Should -Be @(0, (5 * 64KB + 1024))
    }

    It 'Measure-VDisk agrees with qemu-img measure' {
        $ours = Measure-VDisk disk.bochs -Format qcow2
        $theirs = qemu-img measure --output=json -f bochs -O qcow2 (Join-Path $script:Root 'disk.bochs') | ConvertFrom-Json
        $ours.FullyAllocated | Should -Be $theirs.'fully-allocated'
        # qemu has no block status for bochs, so it counts every cluster as data; the engine counts what is stored.
        $ours.Required | Should -BeLessOrEqual $theirs.required
    }

    It 'Convert-VDisk copies it into a writable format, judged by qemu-img compare' {
        Convert-VDisk disk.bochs -Destination disk.vhdx | Out-Null
        qemu-img compare -f bochs -F vhdx (Join-Path $script:Root 'disk.bochs') (Join-Path $script:Root 'disk.vhdx') | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'is never written: convert into bochs and repair are refused' {
        $before = (Get-FileHash disk.bochs).Hash
        { Convert-VDisk expected.raw -Destination out.bochs -Format bochs -ErrorAction Stop } | Should -Throw '*reads bochs images but does not write them*'
        Test-Path out.bochs | Should -BeFalse
        Repair-VDisk disk.bochs -Confirm:$false -ErrorVariable failure2 -ErrorAction SilentlyContinue
        $failure2[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
        (Get-FileHash disk.bochs).Hash | Should -Be $before
    }
}
