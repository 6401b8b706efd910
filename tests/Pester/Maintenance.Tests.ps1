#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# Migration and maintenance scripts as an administrator writes them, on small images.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root
}

Describe 'Migration: VMware and KVM disks to Hyper-V' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path seed.raw -SizeBytes 32MB | Out-Null
        Write-Bytes seed.raw 0 (New-TestBytes 1MB 1)
        Write-Bytes seed.raw 20MB (New-TestBytes 64KB 2)
        Convert-VDisk -Path seed.raw -Destination app.vmdk | Out-Null
        Convert-VDisk -Path seed.raw -Destination db.qcow2 | Out-Null
    }
    AfterAll { Pop-Location }

    It 'converts every disk of a folder to VHDX beside its source' {
        Get-VDisk -Path *.vmdk, *.qcow2 | Convert-VDisk -Format vhdx
        Test-Path app.vhdx | Should -BeTrue
        Test-Path db.vhdx | Should -BeTrue
        (Get-VDisk app.vhdx).Format | Should -Be 'vhdx'
    }

    It 'verifies each conversion before the source is deleted' {
        Convert-VDisk -Path seed.raw -Destination moved.vhd -DeleteSource:$false
        Compare-VDisk -ReferencePath seed.raw -DifferencePath moved.vhd -Quiet | Should -BeTrue
    }

    It 'reports the first differing offset of two copies' {
        Copy-Item seed.raw changed.raw
        Write-Bytes changed.raw 5MB ([byte[]](1, 2, 3))
        $r = Compare-VDisk seed.raw changed.raw
        $r.Identical | Should -BeFalse
        $r.FirstMismatchOffset | Should -Be 5MB
    }

    It 'deletes the source only after the output verified identical' {
        Copy-Item seed.raw throwaway.raw
        Convert-VDisk -Path throwaway.raw -Destination kept.qcow2 -DeleteSource
        Test-Path throwaway.raw | Should -BeFalse
        Compare-VDisk seed.raw kept.qcow2 -Quiet | Should -BeTrue
    }

    It 'makes an Azure-style fixed VHD' {
        $info = Convert-VDisk -Path seed.raw -Destination azure.vhd -Type Fixed -PassThru
        $info.Type | Should -Be 'Fixed'
        $info.Size % 1MB | Should -Be 0
    }
}

Describe 'Chains: gold image, department image, user image' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path gold.qcow2 -SizeBytes 16MB | Out-Null
        New-VDisk -Path dept.qcow2 -ParentPath gold.qcow2 | Out-Null
        New-VDisk -Path user.qcow2 -ParentPath dept.qcow2 | Out-Null
    }
    AfterAll { Pop-Location }

    It 'lists the layers top first' {
        $chain = Get-VDiskChain user.qcow2
        $chain.Depth | Should -Be @(0, 1, 2)
        $chain[1].Path | Should -BeLike '*dept.qcow2'
        $chain[0].ParentFormat | Should -Be 'qcow2'
    }

    It 'maps which layer holds which range' {
        $map = Get-VDiskMap user.qcow2
        ($map | Measure-Object Length -Sum).Sum | Should -Be 16MB
    }

    It 'writes the user delta against the gold image in one command' {
        Convert-VDisk -Path user.qcow2 -Destination delta.qcow2 -ParentPath gold.qcow2
        (Get-VDisk delta.qcow2).BackingFile | Should -Be 'gold.qcow2'
        Compare-VDisk user.qcow2 delta.qcow2 -Quiet | Should -BeTrue
    }

    It 'commits the user image into the gold image, skipping the department layer' {
        Invoke-VDiskCommit -Path user.qcow2 -Base gold.qcow2 -Confirm:$false
        (Get-VDisk user.qcow2).ParentFullPath | Should -BeLike '*gold.qcow2'
    }

    It 'rebases onto a new base keeping only real differences' {
        Convert-VDisk -Path gold.qcow2 -Destination gold2.qcow2
        Set-VDisk -Path dept.qcow2 -ParentPath gold2.qcow2 -Deduplicate
        (Get-VDisk dept.qcow2).BackingFile | Should -Be 'gold2.qcow2'
    }

    It 'rebases pointer-only after the base moved' {
        New-Item -ItemType Directory base | Out-Null
        Copy-Item gold.qcow2 base/gold.qcow2
        Set-VDisk -Path user.qcow2 -ParentPath base/gold.qcow2 -Unsafe
        (Get-VDisk user.qcow2).BackingFile | Should -Be 'base/gold.qcow2'
    }
}

Describe 'Nightly maintenance' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path vm.qcow2 -SizeBytes 16MB | Out-Null
    }
    AfterAll { Pop-Location }

    It 'checks the image' {
        Test-VDisk vm.qcow2 | Should -BeTrue
        (Test-VDisk vm.qcow2 -Detailed).Corruptions | Should -Be 0
    }

    It 'takes, lists, restores and prunes snapshots' {
        New-VDiskSnapshot -Path vm.qcow2 -Name nightly-1 | Out-Null
        (Get-VDiskSnapshot vm.qcow2).Name | Should -Contain 'nightly-1'
        Get-VDiskSnapshot vm.qcow2 -Name 'nightly-*' | Restore-VDiskSnapshot -Confirm:$false
        Get-VDiskSnapshot vm.qcow2 -Name 'nightly-*' | Remove-VDiskSnapshot -Confirm:$false
        Get-VDiskSnapshot vm.qcow2 | Should -BeNullOrEmpty
    }

    It 'keeps a bitmap for incremental backups' {
        Add-VDiskBitmap -Path vm.qcow2 -Name backup | Out-Null
        Add-VDiskBitmap -Path vm.qcow2 -Name daily -Granularity 64KB | Out-Null
        (Get-VDiskBitmap vm.qcow2).Name | Should -Be @('backup', 'daily')
        Disable-VDiskBitmap -Path vm.qcow2 -Name backup
        (Get-VDiskBitmap vm.qcow2 -Name backup).Enabled | Should -BeFalse
        Get-VDiskBitmap vm.qcow2 -Name backup | Enable-VDiskBitmap
        (Get-VDiskBitmap vm.qcow2 -Name backup).Enabled | Should -BeTrue
        Merge-VDiskBitmap -Path vm.qcow2 -Name backup -SourceName daily
        Clear-VDiskBitmap -Path vm.qcow2 -Name backup
        (Get-VDiskBitmap vm.qcow2 -Name backup).DirtyBytes | Should -Be 0
        Get-VDiskBitmap vm.qcow2 | Remove-VDiskBitmap -Confirm:$false
        Get-VDiskBitmap vm.qcow2 | Should -BeNullOrEmpty
    }

    It 'repairs leaks and reports what it fixed' {
        $r = Repair-VDisk -Path vm.qcow2 -Mode Leaks -Confirm:$false
        $r.IsValid | Should -BeTrue
        $r.Path | Should -BeLike '*vm.qcow2'
    }

    It 'refuses to repair a raw image precisely' {
        New-VDisk -Path plain.raw -SizeBytes 1MB | Out-Null
        Repair-VDisk -Path plain.raw -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
    }

    It 'grows the disk and refuses to shrink without -Shrink' {
        Resize-VDisk -Path vm.qcow2 -Size +16M
        (Get-VDisk vm.qcow2).Size | Should -Be 32MB
        Resize-VDisk -Path vm.qcow2 -Size 16M -ErrorVariable err -ErrorAction SilentlyContinue
        $err | Should -Not -BeNullOrEmpty
        (Get-VDisk vm.qcow2).Size | Should -Be 32MB
    }

    It 'measures what a conversion would need' {
        $m = Measure-VDisk -Path vm.qcow2 -Format qcow2
        $m.FullyAllocated | Should -BeGreaterThan 32MB
        (Measure-VDisk -SizeBytes 1GB -Format raw).FullyAllocated | Should -Be 1GB
    }

    It 'compacts a disk' {
        Optimize-VDisk -Path vm.qcow2 -Mode Full -PassThru | Should -Not -BeNullOrEmpty
    }

    It 'copies a range like dd and syncs only differing blocks' {
        New-VDisk -Path src.raw -SizeBytes 4MB | Out-Null
        Write-Bytes src.raw 1MB (New-TestBytes 4096 9)
        Copy-VDiskData -Path src.raw -Destination part.raw -BlockSize 1MB -Skip 1 -Count 1
        (Get-Item part.raw).Length | Should -Be 1MB
        New-VDisk -Path dst.qcow2 -SizeBytes 4MB | Out-Null
        $r = Sync-VDisk -Path src.raw -Destination dst.qcow2
        $r.Written | Should -BeGreaterThan 0
        $r.Written | Should -BeLessThan 4MB
        (Sync-VDisk -Path src.raw -Destination dst.qcow2).Written | Should -Be 0
    }
}

Describe 'Disk identity: attaching a copy next to the original' {
    BeforeAll {
        Push-Location TestDrive:
        New-VDisk -Path ident-seed.raw -SizeBytes 8MB | Out-Null
        Write-Bytes ident-seed.raw 1MB (New-TestBytes 64KB 5)
        Convert-VDisk -Path ident-seed.raw -Destination data.vhdx | Out-Null
    }
    AfterAll { Pop-Location }

    It 'gives a copied VHDX a new disk identifier and keeps its data' {
        Copy-Item data.vhdx data-copy.vhdx
        $original = (Get-VDisk data.vhdx).DiskIdentifier
        $info = Set-VDisk -Path data-copy.vhdx -ResetDiskIdentifier -PassThru
        $info.DiskIdentifier | Should -Not -BeNullOrEmpty
        $info.DiskIdentifier | Should -Not -Be $original
        (Get-VDisk data-copy.vhdx).DiskIdentifier | Should -Be $info.DiskIdentifier
        (Get-VDisk data.vhdx).DiskIdentifier | Should -Be $original
        Compare-VDisk -ReferencePath data.vhdx -DifferencePath data-copy.vhdx -Quiet | Should -BeTrue
    }

    It 'resets VHD, VDI and VMDK copies from the pipeline' {
        foreach ($extension in 'vhd', 'vdi', 'vmdk') {
            Convert-VDisk -Path ident-seed.raw -Destination "copy.$extension" | Out-Null
        }
        $before = @{}
        $images = Get-VDisk -Path copy.vhd, copy.vdi, copy.vmdk
        $images | ForEach-Object { $before[(Split-Path $_.Path -Leaf)] = $_.DiskIdentifier }
        $images | Set-VDisk -ResetDiskIdentifier
        foreach ($name in 'copy.vhd', 'copy.vdi', 'copy.vmdk') {
            $after = (Get-VDisk $name).DiskIdentifier
            $after | Should -Not -BeNullOrEmpty
            $after | Should -Not -Be $before[$name]
            Compare-VDisk -ReferencePath ident-seed.raw -DifferencePath $name -Quiet | Should -BeTrue
        }
    }

    It 'refuses a qcow2 image precisely: it has no disk identifier' {
        New-VDisk -Path ident.qcow2 -SizeBytes 1MB | Out-Null
        Set-VDisk -Path ident.qcow2 -ResetDiskIdentifier -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
        $err[0].Exception.Reason | Should -Be 'qcow2 does not support disk identifiers'
    }
}
