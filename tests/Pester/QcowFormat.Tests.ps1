#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# qcow (version 1, QEMU's original qcow) through the cmdlets, on images qemu-img makes, judged by
# qemu-img (compare, info, map) and qemu-io; QEMU has no check for qcow, so Test-VDisk is judged by
# what qemu-io reads of the same image.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root
    function Full([string] $Name) { Join-Path $script:Root $Name }
}

Describe 'qcow images' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f qcow (Full 'vm.qcow') 6M
        qemu-io -f qcow -c 'write -P 0x11 0 64k' -c 'write -c -P 0x22 2M 4k' -c 'write -P 0x33 5119k 1k' (Full 'vm.qcow') | Out-Null
    }
    AfterAll { Pop-Location }

    It 'Get-VDisk describes it as qemu-img info does' {
        $info = Get-VDisk vm.qcow
        $qemu = qemu-img info --output=json (Full 'vm.qcow') | Out-String | ConvertFrom-Json
        $info.Format | Should -Be 'qcow'
        $info.Size | Should -Be $qemu.'virtual-size'
        $info.ClusterSize | Should -Be $qemu.'cluster-size'
        $info.Encrypted | Should -BeFalse
        $info.FormatSpecific['encryption'] | Should -Be 'none'
    }

    It 'Get-VDiskMap reports the runs qemu-img map reports' {
        $map = @(Get-VDiskMap vm.qcow)
        $qemu = qemu-img map --output=json -f qcow (Full 'vm.qcow') | Out-String | ConvertFrom-Json
        foreach ($run in $qemu) {
            $ours = @($map | Where-Object { $_.Start -ge $run.start -and $_.Start -lt $run.start + $run.length })
            ($ours | Measure-Object Length -Sum).Sum | Should -Be $run.length
            $ours | ForEach-Object { $_.Data | Should -Be $run.data }
        }

        ($map | Where-Object Compressed).Start | Should -Be (2MB)
    }

    It 'Test-VDisk passes it and fails a damaged L2 entry whose data qemu-io no longer reads' {
        Test-VDisk vm.qcow | Should -BeTrue
        Copy-Item vm.qcow damaged.qcow
        # The first L1 entry (at 48) names the first L2 table; its second entry maps guest 4 KiB.
        $bytes = [IO.File]::ReadAllBytes((Full 'damaged.qcow'))
        [Array]::Reverse($bytes, 48, 8)
        $l2 = [BitConverter]::ToInt64($bytes, 48)
        Write-Bytes damaged.qcow ($l2 + 8) ([byte[]](0, 0, 1, 0, 0, 0, 0, 0))
        # qemu reads zeros past the end of the file, silently: the written pattern is gone for it.
        qemu-io -f qcow -r -c 'read -P 0x11 4k 4k' (Full 'damaged.qcow') 2>&1 | Out-String | Should -Match 'Pattern verification failed'
        Get-VDiskMap damaged.qcow -ErrorVariable failure -ErrorAction SilentlyContinue | Out-Null
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.CorruptImage*'
        Test-VDisk damaged.qcow | Should -BeFalse
        (Test-VDisk damaged.qcow -Detailed).Corruptions | Should -Be 1
    }

    It 'Compare-VDisk finds it identical to its qemu-img raw copy' {
        qemu-img convert -f qcow -O raw (Full 'vm.qcow') (Full 'vm.raw')
        Compare-VDisk vm.qcow vm.raw -Quiet | Should -BeTrue
        (Compare-VDisk vm.qcow vm.raw).Identical | Should -BeTrue
    }

    It 'Convert-VDisk turns it into a qcow2 that qemu-img checks and compares identical' {
        Convert-VDisk vm.qcow -Destination vm.qcow2
        qemu-img check -f qcow2 (Full 'vm.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0
        qemu-img compare -f qcow -F qcow2 (Full 'vm.qcow') (Full 'vm.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'Convert-VDisk -Compress writes a qcow that qemu-img compares identical and maps as compressed' {
        Convert-VDisk vm.qcow2 -Destination back.qcow -Compress
        qemu-img compare -f qcow2 -F qcow (Full 'vm.qcow2') (Full 'back.qcow') | Out-Null
        $LASTEXITCODE | Should -Be 0
        $qemu = qemu-img map --output=json -f qcow (Full 'back.qcow') | Out-String | ConvertFrom-Json
        @($qemu | Where-Object { $_.data -and $null -eq $_.offset }).Count | Should -BeGreaterThan 0
        (Get-Item back.qcow).Length | Should -BeLessThan (Get-Item vm.qcow).Length
    }

    It 'Measure-VDisk gives at least what a conversion to qcow writes' {
        $measure = Measure-VDisk vm.qcow2 -Format qcow
        Convert-VDisk vm.qcow2 -Destination measured.qcow
        (Get-Item measured.qcow).Length | Should -BeLessOrEqual $measure.Required
        $measure.FullyAllocated | Should -BeGreaterOrEqual 6MB
    }

    It 'New-VDisk makes the same file qemu-img create does, with a backing file qemu reads through' {
        New-VDisk -Path new.qcow -SizeBytes 10MB | Out-Null
        qemu-img create -q -f qcow (Full 'qemu-new.qcow') 10M
        (Get-FileHash new.qcow).Hash | Should -Be (Get-FileHash qemu-new.qcow).Hash

        New-VDisk -Path child.qcow -ParentPath vm.qcow | Out-Null
        (Get-VDisk child.qcow).ParentPath | Should -Be (Full 'vm.qcow')
        qemu-img compare -f qcow -F qcow (Full 'child.qcow') (Full 'vm.qcow') | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'reads an AES-encrypted qcow''s layout without a password and refuses its data with a password error' {
        qemu-img create -q -f qcow --object secret,id=s0,data=pw -o encrypt.format=aes,encrypt.key-secret=s0 (Full 'aes.qcow') 1M
        qemu-io --object secret,id=s0,data=pw --image-opts -c 'write -P 0x44 0 4k' "driver=qcow,file.filename=$(Full 'aes.qcow'),encrypt.key-secret=s0" | Out-Null
        (Get-VDisk aes.qcow).Encrypted | Should -BeTrue
        Convert-VDisk aes.qcow -Destination aes.raw -ErrorVariable failure -ErrorAction SilentlyContinue
        # The cmdlets take no password yet: the engine's typed refusal reaches the error record.
        $failure[0].Exception | Should -BeOfType ([VDiskPS.Formats.ImagePasswordException])
        $failure[0].Exception.Missing | Should -BeTrue
        Test-Path aes.raw | Should -BeFalse
    }

    It 'refuses to create an encrypted qcow, as QEMU''s emulators refuse to use one' {
        New-VDisk -Path enc.qcow -SizeBytes 1MB -Option @{ encryption = 'on' } -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
        $failure[0].Exception.Message | Should -Match 'AES-encrypted qcow'
        Test-Path enc.qcow | Should -BeFalse
    }
}
