#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# Appliances: Export-VDiskOva, Get-VDiskOva, and Get-VDisk / Convert-VDisk reading disks out of an OVA.
# Judged by GNU tar, sha256sum and qemu-img, which nobody here wrote.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root
}

Describe 'VMware to Hyper-V through an OVA' {
    BeforeAll {
        Push-Location TestDrive:
        & qemu-img create -q -f raw web.raw 16M
        Write-Bytes web.raw 0 (New-TestBytes 1MB 1)
        Write-Bytes web.raw 9MB (New-TestBytes 64KB 2)
        & qemu-img convert -f raw -O vmdk web.raw web.vmdk
        & qemu-img create -q -f raw data.raw 8M
        Write-Bytes data.raw 3MB (New-TestBytes 200KB 3)
        & qemu-img convert -f raw -O vmdk -o subformat=monolithicFlat data.raw data.vmdk
        $script:Vm = Export-VDiskOva -Path web.vmdk, data.vmdk -Destination web01.ova -Name web01 -CpuCount 2 -MemoryMB 4096 -Firmware Efi -OSType WindowsServer2019
    }
    AfterAll { Pop-Location }

    It 'exports a package tar lists with the descriptor first and the manifest last' {
        $names = & tar -tf web01.ova
        $names | Should -Be @('web01.ovf', 'web01-disk1.vmdk', 'web01-disk2.vmdk', 'web01.mf')
    }

    It 'writes a manifest sha256sum accepts for every extracted member' {
        New-Item -ItemType Directory x | Out-Null
        & tar -xf web01.ova -C x
        Push-Location x
        try { & sha256sum -c web01.mf | Should -Match 'OK$' ; $LASTEXITCODE | Should -Be 0 } finally { Pop-Location }
    }

    It 'returns the virtual machine it described' {
        $script:Vm.Name | Should -Be 'web01'
        $script:Vm.CpuCount | Should -Be 2
        $script:Vm.MemoryMB | Should -Be 4096
        $script:Vm.Firmware | Should -Be 'efi'
        $script:Vm.OSType | Should -Be 'windows2019srv_64Guest'
        $script:Vm.Disks.Capacity | Should -Be @(16MB, 8MB)
    }

    It 'gives Get-VDiskOva the VM a migration script sizes the new VM from' {
        $vm = Get-VDiskOva web01.ova
        $vm.Disks.Controller | Should -Be @('SCSI', 'SCSI')
        $vm.Disks.File | Should -Be @('web01-disk1.vmdk', 'web01-disk2.vmdk')
        ($vm | Out-String) | Should -Match 'web01-disk2.vmdk'
    }

    It 'describes each disk of the OVA with Get-VDisk' {
        $disks = Get-VDisk web01.ova
        $disks.Member | Should -Be @('web01-disk1.vmdk', 'web01-disk2.vmdk')
        $disks.DiskId | Should -Be @('vmdisk1', 'vmdisk2')
        $disks[0].Path | Should -Be (Join-Path $script:Root 'web01.ova')
        $disks.Subformat | Should -Be @('streamOptimized', 'streamOptimized')
    }

    It 'converts a disk straight out of the OVA to VHDX, the same as its source by qemu-img compare' {
        Convert-VDisk web01.ova -Member web01-disk1.vmdk -Destination web.vhdx
        & qemu-img compare -q -f raw -F vhdx web.raw web.vhdx
        $LASTEXITCODE | Should -Be 0
        Convert-VDisk web01.ova -Member vmdisk2 -Destination data.vhdx
        & qemu-img compare -q -f raw -F vhdx data.raw data.vhdx
        $LASTEXITCODE | Should -Be 0
    }

    It 'asks which disk when the OVA holds several, listing them' {
        Convert-VDisk web01.ova -Destination any.vhdx -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Match '^VDisk.InvalidOption'
        $err[0].Exception.Message | Should -Match 'web01-disk1.vmdk, web01-disk2.vmdk'
        Test-Path any.vhdx | Should -BeFalse
    }

    It 'refuses -Member for a disk image' {
        Convert-VDisk web.raw -Member x -Destination y.vhdx -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Match '^VDisk.InvalidOption'
    }

    It 'reports a member changed since the manifest as VDisk.CorruptImage, leaving no output' {
        $bytes = [System.IO.File]::ReadAllBytes((Join-Path $script:Root 'web01.ova'))
        # The last byte of the second disk's member (its end-of-stream sector is zeros): only the digest sees it.
        $copy = Join-Path $script:Root 'tampered.ova'
        [System.IO.File]::WriteAllBytes($copy, $bytes)
        $member = & tar -tvf tampered.ova | Where-Object { $_ -match 'web01-disk2.vmdk' }
        $size = [long](($member -split '\s+')[2])
        $headerAt = $null
        for ($at = 0; $at -lt $bytes.Length; $at += 512) {
            if ([System.Text.Encoding]::ASCII.GetString($bytes, $at, 16).StartsWith('web01-disk2.vmdk')) { $headerAt = $at; break }
        }
        $fs = [System.IO.File]::OpenWrite($copy)
        try { $fs.Position = $headerAt + 512 + $size - 1; $fs.WriteByte(0x42) } finally { $fs.Dispose() }
        Convert-VDisk tampered.ova -Member web01-disk2.vmdk -Destination bad.vhdx -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Match '^VDisk.CorruptImage'
        $err[0].Exception.Message | Should -Match 'web01-disk2.vmdk'
        @(Get-ChildItem -Force -Filter '*bad.vhdx*').Count | Should -Be 0
    }

    It 'writes nothing with -WhatIf' {
        Export-VDiskOva -Path web.vmdk -Destination whatif.ova -WhatIf
        Test-Path whatif.ova | Should -BeFalse
    }

    It 'keeps an existing package unless -Force' {
        Set-Content keep.ova 'keep'
        Export-VDiskOva -Path data.vmdk -Destination keep.ova -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Match '^VDisk.FileExists'
        Get-Content keep.ova | Should -Be 'keep'
        Export-VDiskOva -Path data.vmdk -Destination keep.ova -Force | Out-Null
        & tar -tf keep.ova | Select-Object -First 1 | Should -Be 'data.ovf'
    }

    It 'exports the .ovf folder layout' {
        New-Item -ItemType Directory folder | Out-Null
        $vm = Export-VDiskOva -Path data.vmdk -Destination folder -Format ovf -Controller Ide
        $vm.Path | Should -Be (Join-Path $script:Root 'folder/data.ovf')
        (Get-ChildItem folder).Name | Sort-Object | Should -Be @('data-disk1.vmdk', 'data.mf', 'data.ovf')
        (Get-VDiskOva folder/data.ovf).Disks[0].Controller | Should -Be 'IDE'
        Convert-VDisk folder/data.ovf -Destination fromfolder.qcow2
        & qemu-img compare -q -f raw -F qcow2 data.raw fromfolder.qcow2
        $LASTEXITCODE | Should -Be 0
    }

    It 'refuses a package where a disk image is expected' {
        Test-VDisk web01.ova -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Match '^VDisk.NotSupported'
    }
}
