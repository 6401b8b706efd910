#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# Issue 10: a Hyper-V script ports by renaming the noun. Hyper-V's parameters and Get-VHD's properties,
# judged by qemu-img (info, check, compare, map), vhdiinfo (libvhdi) and sgdisk.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')

    function Get-QemuInfo([string] $Path) { (qemu-img info --output=json $Path) -join "`n" | ConvertFrom-Json }
    function Get-QemuMap([string] $Path) { (qemu-img map --output=json $Path) -join "`n" | ConvertFrom-Json }
    function Get-QemuData([string] $Path) { (Get-QemuMap $Path | Where-Object data | Measure-Object length -Sum).Sum }
    function Test-Qemu([string] $Path) { qemu-img check $Path *> $null; $LASTEXITCODE -eq 0 }
    function Test-QemuSame([string] $A, [string] $B, [string[]] $Formats = @()) { qemu-img compare @Formats $A $B *> $null; $LASTEXITCODE -eq 0 }
    function Get-Vhdi([string] $Path) { (vhdiinfo $Path) -join "`n" }
    function Read-BigEndian64([byte[]] $Bytes, [long] $Offset) {
        $slice = $Bytes[$Offset..($Offset + 7)]
        [array]::Reverse($slice)
        [System.BitConverter]::ToInt64($slice, 0)
    }

    # A raw disk with one GPT partition from sector 2048, 20 MiB long (ends at byte 22020096).
    function New-GptRaw([string] $Path, [long] $Size = 64MB) {
        qemu-img create -q -f raw $Path $Size
        sgdisk -n 1:2048:+20M -t 1:8300 $Path | Out-Null
        qemu-io -f raw -c 'write -P 0x5a 2M 1M' -c 'write -P 0x6b 20M 1M' $Path | Out-Null
    }

    # The bytes of [$Start, $End) of any image, read by qemu-img, as a hash.
    function Get-RangeHash([string] $Path, [long] $Start, [long] $End) {
        $Path = [System.IO.Path]::Combine((Get-Location).ProviderPath, $Path)
        $raw = "$Path.prefix.raw"
        qemu-img convert -O raw $Path $raw
        $fs = [System.IO.File]::OpenRead($raw)
        try {
            $Length = $End - $Start
            $buffer = [byte[]]::new($Length)
            $fs.Position = $Start
            $read = 0
            while ($read -lt $Length) { $n = $fs.Read($buffer, $read, $Length - $read); if ($n -le 0) { break }; $read += $n }
            [System.BitConverter]::ToString([System.Security.Cryptography.SHA256]::Create().ComputeHash($buffer, 0, $read))
        } finally { $fs.Dispose(); Remove-Item $raw }
    }
}

Describe 'New-VDisk takes New-VHD''s parameters' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'creates a dynamic disk with -Dynamic and a fixed one with -Fixed' {
        New-VDisk dyn.vhdx 8MB -Dynamic | Out-Null
        New-VDisk fix.vhdx 8MB -Fixed | Out-Null
        Get-Vhdi dyn.vhdx | Should -Match 'Disk type\s*: Dynamic'
        Get-Vhdi fix.vhdx | Should -Match 'Disk type\s*: Fixed'
        Test-Qemu fix.vhdx | Should -BeTrue
    }

    It 'takes the parent as the second positional argument with -Differencing' {
        New-VDisk parent.vhdx 8MB | Out-Null
        New-VDisk child.vhdx parent.vhdx -Differencing | Out-Null
        $vhdi = Get-Vhdi child.vhdx
        $vhdi | Should -Match 'Disk type\s*: Differential'
        $vhdi | Should -Match ([regex]::Escape((Join-Path (Get-Location).ProviderPath 'parent.vhdx')))
    }

    It 'refuses two disk types that contradict each other' {
        New-VDisk both.vhdx 8MB -Fixed -Type Dynamic -ErrorVariable e -ErrorAction SilentlyContinue | Out-Null
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption*'
        Test-Path both.vhdx | Should -BeFalse
    }

    It 'gives a new VHDX New-VHD''s 32 MiB blocks and 4096-byte physical sectors' {
        $info = New-VDisk defaults.vhdx 1GB
        (Get-QemuInfo defaults.vhdx).'cluster-size' | Should -Be 32MB
        $info.BlockSize | Should -Be 32MB
        # No tool here reports a VHDX's physical sector size (qemu-img and vhdiinfo show only the logical one).
        $info.PhysicalSectorSize | Should -Be 4096
    }

    It 'keeps an explicit block size' {
        New-VDisk small.vhdx 1GB -BlockSizeBytes 1MB | Out-Null
        (Get-QemuInfo small.vhdx).'cluster-size' | Should -Be 1MB
    }

    It 'knows .avhdx as VHDX and .avhd as VHD (checkpoints)' {
        New-VDisk parent.vhd 8MB | Out-Null
        New-VDisk snap.avhd parent.vhd -Differencing | Out-Null
        New-VDisk snap.avhdx parent.vhdx -Differencing | Out-Null
        New-VDisk plain.avhd 8MB | Out-Null
        (Get-QemuInfo plain.avhd).format | Should -Be 'vpc'
        Get-Vhdi snap.avhdx | Should -Match 'Format\s*: VHDX'
        Get-Vhdi snap.avhd | Should -Match 'Disk type\s*: Differential'
    }

    It 'refuses a .vhds (VHD Set) as not supported instead of writing something else' {
        New-VDisk shared.vhds 8MB -ErrorVariable e -ErrorAction SilentlyContinue | Out-Null
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
        $e[0].Exception.Message | Should -Match 'VHD Set'
        Test-Path shared.vhds | Should -BeFalse
    }

    It 'creates one disk per CSV row, SizeBytes bound by property name' {
        "Path,SizeBytes`ncsv1.qcow2,1048576`ncsv2.vhdx,20M" | Set-Content disks.csv
        Import-Csv disks.csv | New-VDisk | Out-Null
        (Get-QemuInfo csv1.qcow2).'virtual-size' | Should -Be 1MB
        (Get-QemuInfo csv2.vhdx).'virtual-size' | Should -Be 20MB
    }
}

Describe 'Get-VDisk shows Get-VHD''s properties' {
    BeforeAll {
        Push-Location TestDrive:
        New-GptRaw gpt.raw
        Convert-VDisk gpt.raw gpt.vhdx | Out-Null
        New-VDisk over.qcow2 -ParentPath gpt.raw -ParentFormat raw | Out-Null
    }
    AfterAll { Pop-Location }

    It 'has VhdFormat, VhdType, Size, BlockSize and sector sizes' {
        $info = Get-VDisk gpt.vhdx
        $info.VhdFormat | Should -Be 'VHDX'
        $info.VhdType | Should -Be 'Dynamic'
        $info.Size | Should -Be (Get-QemuInfo gpt.vhdx).'virtual-size'
        $info.BlockSize | Should -Be (Get-QemuInfo gpt.vhdx).'cluster-size'
        $info.LogicalSectorSize | Should -Be 512
        (Get-VDisk over.qcow2).VhdFormat | Should -BeExactly 'QCOW2'
    }

    It 'has FileSize as the file''s length and AllocatedSize as qemu-img''s actual-size' {
        $info = Get-VDisk gpt.vhdx
        $info.FileSize | Should -Be (Get-Item gpt.vhdx).Length
        $info.AllocatedSize | Should -Be (Get-QemuInfo gpt.vhdx).'actual-size'
    }

    It 'has ParentPath as the full path and BackingFile as recorded' {
        $info = Get-VDisk over.qcow2
        $info.ParentPath | Should -Be (Join-Path (Get-Location).ProviderPath 'gpt.raw')
        $info.BackingFile | Should -Be (Get-QemuInfo over.qcow2).'backing-filename'
    }

    It 'has MinimumSize: the end of the last GPT partition plus the backup table' {
        (Get-VDisk gpt.vhdx).MinimumSize | Should -Be (22020096 + 33 * 512)
        # Read through the parent: the overlay shows its parent's partitions.
        (Get-VDisk over.qcow2).MinimumSize | Should -Be (22020096 + 33 * 512)
    }

    It 'has MinimumSize from an MBR partition table' {
        qemu-img create -q -f raw mbr.raw 32M
        'start=2048, size=8192, type=83' | sfdisk -q mbr.raw | Out-Null
        (Get-VDisk mbr.raw).MinimumSize | Should -Be ((2048 + 8192) * 512)
    }

    It 'has no MinimumSize without a partition table' {
        New-VDisk blank.vhdx 8MB | Out-Null
        (Get-VDisk blank.vhdx).MinimumSize | Should -BeNullOrEmpty
    }

    It 'has DiskIdentifier' {
        (Get-VDisk gpt.vhdx).DiskIdentifier | Should -Not -BeNullOrEmpty
    }

    It 'has FragmentationPercentage: the share of allocated blocks out of guest order, as qemu-img map shows them' {
        qemu-img create -q -f qcow2 -o cluster_size=64k frag.qcow2 1M
        # Written last cluster first: in the file the clusters lie in the reverse of guest order.
        qemu-io -c 'write -P 1 192k 64k' -c 'write -P 2 128k 64k' -c 'write -P 3 64k 64k' -c 'write -P 4 0 64k' frag.qcow2 | Out-Null
        $map = @(Get-QemuMap frag.qcow2 | Where-Object data)
        $outOfOrder = 0
        for ($i = 1; $i -lt $map.Count; $i++) { if ($map[$i].offset -ne $map[$i - 1].offset + $map[$i - 1].length) { $outOfOrder++ } }
        $outOfOrder | Should -Be 3
        (Get-VDisk frag.qcow2).FragmentationPercentage | Should -Be 75
        (Get-VDisk gpt.vhdx).FragmentationPercentage | Should -Be 0
        (Get-VDisk gpt.raw).FragmentationPercentage | Should -BeNullOrEmpty
    }

    It 'has Alignment 1 for a VHDX (blocks on 1 MiB boundaries) and 0 for a dynamic VHD holding data after its sector bitmap' {
        (Get-VDisk gpt.vhdx).Alignment | Should -Be 1
        Convert-VDisk gpt.raw gpt.vhd | Out-Null
        # qemu-img map: the VHD's first data run starts one 512-byte bitmap sector into its block, off any 4 KiB boundary.
        $first = Get-QemuMap gpt.vhd | Where-Object data | Select-Object -First 1
        ($first.offset % 1MB) | Should -Not -Be 0
        (Get-VDisk gpt.vhd).Alignment | Should -Be 0
    }

    It 'reads many paths and wildcards' {
        (Get-VDisk gpt.*, over.qcow2).Count | Should -BeGreaterOrEqual 3
    }
}

Describe 'Resize-VDisk -ToMinimumSize' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'shrinks a GPT disk to its partitions and moves the backup GPT so sgdisk finds no problems' {
        New-GptRaw min.raw
        Convert-VDisk min.raw min.vhdx | Out-Null
        Resize-VDisk min.vhdx -ToMinimumSize -Confirm:$false
        (Get-QemuInfo min.vhdx).'virtual-size' | Should -Be (22020096 + 33 * 512)
        Test-Qemu min.vhdx | Should -BeTrue
        qemu-img convert -O raw min.vhdx min-after.raw
        (sgdisk -v min-after.raw) -join "`n" | Should -Match 'No problems found'
        (sgdisk -p min-after.raw) -join "`n" | Should -Match '2048\s+43007'
        # The partition's bytes (from sector 2048) are unchanged; the GPT headers before it were rewritten.
        Get-RangeHash min.vhdx 1MB 22020096 | Should -Be (Get-RangeHash min.raw 1MB 22020096)
    }

    It 'shrinks an MBR disk to the end of its last partition' {
        qemu-img create -q -f qcow2 mbr.qcow2 32M
        qemu-img convert -f qcow2 -O raw mbr.qcow2 mbr.raw
        'start=2048, size=8192, type=83' | sfdisk -q mbr.raw | Out-Null
        qemu-img convert -f raw -O qcow2 mbr.raw mbr.qcow2
        Resize-VDisk mbr.qcow2 -ToMinimumSize -Confirm:$false
        (Get-QemuInfo mbr.qcow2).'virtual-size' | Should -Be ((2048 + 8192) * 512)
        Test-Qemu mbr.qcow2 | Should -BeTrue
    }

    It 'refuses a size below MinimumSize without -Force, and allows it with -Force' {
        New-GptRaw cut.raw
        Resize-VDisk cut.raw 16MB -Shrink -Confirm:$false -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].ErrorDetails.Message | Should -Match 'Use -Force'
        (Get-QemuInfo cut.raw).'virtual-size' | Should -Be 64MB
        Resize-VDisk cut.raw 16MB -Shrink -Force
        (Get-QemuInfo cut.raw).'virtual-size' | Should -Be 16MB
    }

    It 'refuses -ToMinimumSize on a disk without a partition table' {
        New-VDisk none.qcow2 8MB | Out-Null
        Resize-VDisk none.qcow2 -ToMinimumSize -Confirm:$false -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].Exception.Message | Should -Match 'no MBR or GPT'
        (Get-QemuInfo none.qcow2).'virtual-size' | Should -Be 8MB
    }
}

Describe 'Optimize-VDisk -Mode, as Optimize-VHD''s modes map to an image file' {
    BeforeAll {
        Push-Location TestDrive:
        # Data, then a run the guest overwrote with zeros (sdelete -z), then a discarded run, with qemu's
        # own discard not passed to the file (pass-discard-request=off), so the file still holds its space.
        function New-Worn([string] $Path) {
            qemu-img create -q -f qcow2 $Path 8M
            qemu-io -c 'write -P 7 0 2M' -c 'write -z 2M 1M' -c 'write -P 0 3M 2M' -c 'write -P 9 5M 2M' $Path | Out-Null
            qemu-io --image-opts -c 'discard 5M 2M' "driver=qcow2,file.filename=$Path,pass-discard-request=off" | Out-Null
            Copy-Item $Path "$Path.orig"
        }
    }
    AfterAll { Pop-Location }

    It 'Prezeroed and Full release the blocks the guest zeroed; qemu-img map shows them no longer as data' -ForEach @('Prezeroed', 'Full') {
        New-Worn "$_.qcow2"
        $before = Get-QemuData "$_.qcow2"
        Optimize-VDisk "$_.qcow2" -Mode $_
        $after = Get-QemuData "$_.qcow2"
        $after | Should -Be ($before - 2MB)
        Test-Qemu "$_.qcow2" | Should -BeTrue
        Test-QemuSame "$_.qcow2" "$_.qcow2.orig" | Should -BeTrue
    }

    It 'Quick and Pretrimmed leave zero-filled blocks allocated and give the same file' {
        New-Worn quick.qcow2
        Copy-Item quick.qcow2 pretrimmed.qcow2
        Optimize-VDisk quick.qcow2 -Mode Quick
        Optimize-VDisk pretrimmed.qcow2 -Mode Pretrimmed
        $data = Get-QemuData quick.qcow2
        $data | Should -Be 4MB
        (Get-FileHash quick.qcow2).Hash | Should -Be (Get-FileHash pretrimmed.qcow2).Hash
        Test-Qemu quick.qcow2 | Should -BeTrue
        Test-QemuSame quick.qcow2 quick.qcow2.orig | Should -BeTrue
    }

    It 'Retrim punches the space the image no longer uses, keeping the file''s length' {
        New-Worn retrim.qcow2
        $before = (Get-QemuInfo retrim.qcow2).'actual-size'
        $length = (Get-Item retrim.qcow2).Length
        Optimize-VDisk retrim.qcow2 -Mode Retrim
        (Get-Item retrim.qcow2).Length | Should -Be $length
        (Get-QemuInfo retrim.qcow2).'actual-size' | Should -BeLessOrEqual ($before - 2MB)
        Test-Qemu retrim.qcow2 | Should -BeTrue
        Test-QemuSame retrim.qcow2 retrim.qcow2.orig | Should -BeTrue
    }

    It 'Retrim is refused by name for a format without it' {
        New-VDisk retrim.vmdk 8MB | Out-Null
        Optimize-VDisk retrim.vmdk -Mode Retrim -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
    }

    It 'optimizes a VHD without -Mode, releasing its zero-filled block' {
        qemu-img create -q -f vpc -o subformat=dynamic zeros.vhd 8M
        qemu-io -f vpc -c 'write -P 0 0 2M' -c 'write -P 8 4M 64k' zeros.vhd | Out-Null
        Copy-Item zeros.vhd zeros.vhd.orig
        Optimize-VDisk zeros.vhd
        $data = Get-QemuData zeros.vhd
        # qemu-img sees a VHD block whole: the block holding the 64 KiB write stays, the zero block is gone.
        $data | Should -Be 2MB
        # qemu-img has no check for VHD (vpc); compare and vhdiinfo judge the result.
        Test-QemuSame zeros.vhd zeros.vhd.orig | Should -BeTrue
        Get-Vhdi zeros.vhd | Should -Match 'Disk type\s*: Dynamic'
    }
}

Describe 'Merge-VDisk is Merge-VHD' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'merges a child into -DestinationPath, two levels up' {
        qemu-img create -q -f qcow2 base.qcow2 4M
        qemu-io -c 'write -P 1 0 1M' base.qcow2 | Out-Null
        qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
        qemu-io -c 'write -P 2 1M 1M' mid.qcow2 | Out-Null
        qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
        qemu-io -c 'write -P 3 2M 1M' top.qcow2 | Out-Null
        qemu-img convert -O raw top.qcow2 expected.raw
        Merge-VDisk top.qcow2 base.qcow2 -Force
        Test-Qemu base.qcow2 | Should -BeTrue
        Test-QemuSame base.qcow2 expected.raw | Should -BeTrue
    }

    It 'asks for confirmation without -Force (ConfirmImpact High) and -WhatIf changes nothing' {
        qemu-img create -q -f qcow2 b2.qcow2 4M
        qemu-img create -q -f qcow2 -b b2.qcow2 -F qcow2 c2.qcow2
        qemu-io -c 'write -P 5 0 1M' c2.qcow2 | Out-Null
        Merge-VDisk c2.qcow2 -Force -WhatIf
        Get-QemuData b2.qcow2 | Should -BeNullOrEmpty
        (Get-Command Merge-VDisk).ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0].ConfirmImpact | Should -Be 'High'
    }
}

Describe 'Set-VDisk takes Set-VHD''s parameters' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'sets the physical sector size of a VHDX' {
        New-VDisk sect.vhdx 8MB | Out-Null
        (Set-VDisk sect.vhdx -PhysicalSectorSizeBytes 512 -PassThru).PhysicalSectorSize | Should -Be 512
        # No tool here reports a VHDX's physical sector size; qemu-img check and vhdiinfo judge the rewritten metadata.
        (Get-VDisk sect.vhdx).PhysicalSectorSize | Should -Be 512
        Test-Qemu sect.vhdx | Should -BeTrue
        Get-Vhdi sect.vhdx | Should -Match 'Media size.*8388608'
    }

    It 'refuses -PhysicalSectorSizeBytes for a format without one' {
        New-VDisk sect.qcow2 8MB | Out-Null
        Set-VDisk sect.qcow2 -PhysicalSectorSizeBytes 4096 -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
    }

    It 'takes the parent as the second positional argument and checks -LeafPath names the chain' {
        qemu-img create -q -f qcow2 lbase.qcow2 4M
        qemu-io -c 'write -P 1 0 1M' lbase.qcow2 | Out-Null
        Copy-Item lbase.qcow2 lbase-copy.qcow2
        qemu-img create -q -f qcow2 -b lbase.qcow2 -F qcow2 lmid.qcow2
        qemu-img create -q -f qcow2 -b lmid.qcow2 -F qcow2 lleaf.qcow2
        qemu-img create -q -f qcow2 other.qcow2 4M
        Set-VDisk lmid.qcow2 lbase-copy.qcow2 -LeafPath other.qcow2 -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].Exception.Message | Should -Match 'not in the chain'
        (Get-QemuInfo lmid.qcow2).'backing-filename' | Should -Be 'lbase.qcow2'
        Set-VDisk lmid.qcow2 lbase-copy.qcow2 -LeafPath lleaf.qcow2
        (Get-QemuInfo lmid.qcow2).'backing-filename' | Should -Be 'lbase-copy.qcow2'
        foreach ($image in 'lleaf.qcow2', 'lmid.qcow2', 'lbase-copy.qcow2') { Test-Qemu $image | Should -BeTrue }
        Test-QemuSame lleaf.qcow2 lbase.qcow2 | Should -BeTrue
    }
}

Describe 'Test-VDisk checks the whole chain' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'finds a corrupt parent below a sound child' {
        qemu-img create -q -f qcow2 cbase.qcow2 4M
        qemu-io -c 'write -P 1 0 1M' cbase.qcow2 | Out-Null
        qemu-img create -q -f qcow2 -b cbase.qcow2 -F qcow2 cchild.qcow2
        Test-VDisk cchild.qcow2 | Should -BeTrue
        # Zero the parent's first refcount block: qemu-img check then reports corruptions in it.
        $bytes = [System.IO.File]::ReadAllBytes((Join-Path (Get-Location).ProviderPath 'cbase.qcow2'))
        $table = Read-BigEndian64 $bytes 48
        $block = Read-BigEndian64 $bytes $table
        [System.Array]::Clear($bytes, [int]$block, 65536)
        [System.IO.File]::WriteAllBytes((Join-Path (Get-Location).ProviderPath 'cbase.qcow2'), $bytes)
        Test-Qemu cbase.qcow2 | Should -BeFalse
        Test-Qemu cchild.qcow2 | Should -BeTrue
        Test-VDisk cchild.qcow2 | Should -BeFalse
        $r = Test-VDisk cchild.qcow2 -Detailed
        $r.ParentsChecked | Should -Be 1
        ($r.Messages -join "`n") | Should -Match 'cbase.qcow2'
    }
}

Describe 'Convert-VDisk takes Convert-VHD''s parameters' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'keeps a fixed source fixed, and -VHDType overrides it' {
        New-VDisk cfix.vhdx 8MB -Fixed | Out-Null
        Convert-VDisk cfix.vhdx cfix.vhd
        Test-QemuSame cfix.vhd cfix.vhdx -Formats '-f', 'vpc', '-F', 'vhdx' | Should -BeTrue
        Get-Vhdi cfix.vhd | Should -Match 'Disk type\s*: Fixed'
        Convert-VDisk -Path cfix.vhd -DestinationPath cdyn.vhdx -VHDType Dynamic
        Get-Vhdi cdyn.vhdx | Should -Match 'Disk type\s*: Dynamic'
        Test-QemuSame cfix.vhdx cdyn.vhdx | Should -BeTrue
    }

    It 'runs as a real job with -AsJob, and Receive-Job returns the result' {
        qemu-img create -q -f qcow2 job.qcow2 8M
        qemu-io -c 'write -P 3 1M 1M' job.qcow2 | Out-Null
        $job = Convert-VDisk job.qcow2 job.vhdx -AsJob
        $job | Should -BeOfType ([System.Management.Automation.Job])
        $result = $job | Wait-Job -Timeout 120 | Receive-Job
        $job.State | Should -Be 'Completed'
        $result.Path | Should -Be (Join-Path (Get-Location).ProviderPath 'job.vhdx')
        $result.Format | Should -Be 'vhdx'
        Test-QemuSame job.qcow2 job.vhdx | Should -BeTrue
        Remove-Job $job
    }

    It 'reports a failing item in the job''s errors' {
        # A qcow2 cut after its first sector: it fails when the job opens it.
        $head = [System.IO.File]::ReadAllBytes((Join-Path (Get-Location).ProviderPath 'job.qcow2'))[0..511]
        [System.IO.File]::WriteAllBytes((Join-Path (Get-Location).ProviderPath 'cut.qcow2'), [byte[]]$head)
        $job = Convert-VDisk cut.qcow2 cut.vhdx -AsJob
        $job | Wait-Job -Timeout 120 | Out-Null
        $job.State | Should -Be 'Failed'
        $job | Receive-Job -ErrorVariable e -ErrorAction SilentlyContinue | Out-Null
        $e[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.*'
        Test-Path cut.vhdx | Should -BeFalse
        Remove-Job $job
    }
}

Describe 'A Hyper-V maintenance script ports by renaming the noun' {
    BeforeAll {
        $script:Folder = Join-Path (Get-PSDrive TestDrive).Root 'hyperv'
        New-Item -ItemType Directory $script:Folder | Out-Null
        $vmRaw = Join-Path $script:Folder 'vm.raw'
        New-GptRaw $vmRaw
        qemu-img convert -f raw -O vhdx -o subformat=dynamic $vmRaw (Join-Path $script:Folder 'vm.vhdx')
        Remove-Item $vmRaw
        qemu-img convert -O raw (Join-Path $script:Folder 'vm.vhdx') (Join-Path (Get-PSDrive TestDrive).Root 'vm-expected.raw')

        $text = Get-Content (Join-Path $PSScriptRoot 'Fixtures/HyperVMaintenance.ps1') -Raw
        $script:Ported = $text -replace '-VHD\b', '-VDisk'
        $here = Get-Location
        try {
            & ([scriptblock]::Create($script:Ported)) -Folder $script:Folder -ErrorVariable script:ScriptErrors
        } finally { Set-Location $here }
    }

    It 'uses Hyper-V''s cmdlet names, replaced only in the noun' {
        $script:Ported | Should -Not -Match '-VHD\b'
        (Get-Content (Join-Path $PSScriptRoot 'Fixtures/HyperVMaintenance.ps1') -Raw) | Should -Match 'Merge-VHD -Path'
    }

    It 'runs without errors' {
        $script:ScriptErrors | Should -BeNullOrEmpty
    }

    It 'reported Get-VHD''s properties for every disk' {
        $report = Import-Csv (Join-Path $script:Folder 'report.csv')
        $report.Count | Should -Be 4
        ($report | Where-Object Path -like '*vm.vhdx').MinimumSize | Should -Be (22020096 + 33 * 512)
        ($report | Where-Object Path -like '*scratch.vhdx').VhdType | Should -Be 'Fixed'
        ($report | Where-Object Path -like '*vm_checkpoint.avhdx').ParentPath | Should -Be (Join-Path $script:Folder 'vm.vhdx')
        ($report | Where-Object Path -like '*data.vhdx').BlockSize | Should -Be 32MB
    }

    It 'left every disk consistent for qemu-img check, and every chain valid for Test-VDisk' {
        # qemu-img has no check for VHD (vpc); scratch.vhd is judged by vhdiinfo and compare below.
        foreach ($disk in 'vm.vhdx', 'data.vhdx', 'data_copy.vhdx', 'scratch.vhdx', 'vm_small.vhdx') {
            Test-Qemu (Join-Path $script:Folder $disk) | Should -BeTrue -Because $disk
        }

        # qemu-img cannot open differencing VHDX; vhdiinfo reads the re-linked child's parent.
        Get-Vhdi (Join-Path $script:Folder 'data_child.avhdx') | Should -Match ([regex]::Escape((Join-Path $script:Folder 'data_copy.vhdx')))
        $tests = Import-Csv (Join-Path $script:Folder 'tests.csv')
        $tests.Count | Should -Be 7
        $tests | Where-Object Valid -ne 'True' | Should -BeNullOrEmpty
    }

    It 'kept the data: the merged disk, the converted copies and the shrunk copy compare equal with qemu-img' {
        $expected = Join-Path (Get-PSDrive TestDrive).Root 'vm-expected.raw'
        Test-QemuSame (Join-Path $script:Folder 'vm.vhdx') $expected | Should -BeTrue
        # A fixed VHD has no header qemu probes by: its format is named.
        Test-QemuSame (Join-Path $script:Folder 'scratch.vhd') (Join-Path $script:Folder 'scratch.vhdx') -Formats '-f', 'vpc', '-F', 'vhdx' | Should -BeTrue
        Get-Vhdi (Join-Path $script:Folder 'scratch.vhd') | Should -Match 'Disk type\s*: Fixed'
        $small = Join-Path $script:Folder 'vm_small.vhdx'
        (Get-QemuInfo $small).'virtual-size' | Should -Be (22020096 + 33 * 512)
        Get-RangeHash $small 1MB 22020096 | Should -Be (Get-RangeHash $expected 1MB 22020096)
        (Get-QemuInfo (Join-Path $script:Folder 'data.vhdx')).'virtual-size' | Should -Be 128MB
    }

    It 'shrunk the copy with a GPT sgdisk finds no problems in' {
        $raw = Join-Path (Get-PSDrive TestDrive).Root 'vm_small.raw'
        qemu-img convert -O raw (Join-Path $script:Folder 'vm_small.vhdx') $raw
        (sgdisk -v $raw) -join "`n" | Should -Match 'No problems found'
    }

    It 'optimized the disks it piped with -PassThru' {
        Get-Content (Join-Path $script:Folder 'optimized.txt') | Should -Be @((Join-Path $script:Folder 'data.vhdx'), (Join-Path $script:Folder 'vm_small.vhdx'))
    }
}
