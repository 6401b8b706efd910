#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# The cmdlets on NBD locations, against servers nobody here wrote (qemu-nbd, nbdkit), their answers
# judged by qemu-img (QEMU's own NBD client) on the same export or image.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root

    # A foreground server on a Unix socket, stopped by its process id.
    function Start-ExternalNbd([string] $Tool, [string[]] $Arguments, [string] $Socket) {
        $process = Start-Process -FilePath $Tool -ArgumentList $Arguments -PassThru -RedirectStandardError (Join-Path $script:Root "$([guid]::NewGuid()).err")
        $deadline = (Get-Date).AddSeconds(20)
        while (-not (Test-Path -LiteralPath $Socket)) {
            if ($process.HasExited -or (Get-Date) -gt $deadline) { throw "$Tool did not start" }
            Start-Sleep -Milliseconds 50
        }
        $process
    }
}

Describe 'Reading NBD exports' {
    BeforeAll {
        $script:image = Join-Path $script:Root 'served.qcow2'
        qemu-img create -q -f qcow2 $script:image 8M
        qemu-io -f qcow2 -c 'write -P 0x11 0 300k' -c 'write -z 3M 1M' -c 'write -P 0x33 8128k 64k' $script:image | Out-Null
        $script:copy = Join-Path $script:Root 'copy.qcow2'
        Copy-Item $script:image $script:copy
        $socket = Join-Path $script:Root 'q.sock'
        $script:qemuNbd = Start-ExternalNbd qemu-nbd @('-t', '-f', 'qcow2', '-x', 'disk', '-k', $socket, $script:image) $socket
        $script:uri = "nbd+unix:///disk?socket=$socket"
    }
    AfterAll {
        Stop-Process -Id $script:qemuNbd.Id
    }

    It 'Get-VDisk describes the export with its URL as the path' {
        $info = Get-VDisk -Path $script:uri
        $info.Path | Should -Be $script:uri
        $info.Format | Should -Be 'raw'
        $info.Size | Should -Be 8MB
        (Get-VDisk -LiteralPath $script:uri).Size | Should -Be 8MB
    }

    It 'Get-VDiskMap reports the zero runs qemu-img map reports (BLOCK_STATUS)' {
        $ours = Get-VDiskMap -Path $script:uri | Where-Object { -not $_.Data } | ForEach-Object { "$($_.Start)+$($_.Length)" }
        $theirs = (qemu-img map --output=json -f raw $script:uri | Out-String) | ConvertFrom-Json | ForEach-Object { $_ } | Where-Object { -not $_.data } | ForEach-Object { "$($_.start)+$($_.length)" }
        $ours | Should -Not -BeNullOrEmpty
        $ours | Should -Be $theirs
    }

    It 'Compare-VDisk finds the export identical to the image it serves' {
        (Compare-VDisk -ReferencePath $script:copy -DifferencePath $script:uri).Identical | Should -BeTrue
    }

    It 'Test-VDisk passes a raw export (nothing to check but that it opens and reads)' {
        Test-VDisk -Path $script:uri | Should -BeTrue
        (Test-VDisk -Path $script:uri -Detailed).Messages | Should -Match 'raw has no metadata'
    }

    It 'Convert-VDisk reads the export into a local image qemu-img finds identical' {
        $out = Join-Path $script:Root 'out.vhdx'
        Convert-VDisk -Path $script:uri -Destination $out
        qemu-img compare -f qcow2 $script:copy -F vhdx $out
        $LASTEXITCODE | Should -Be 0
    }

    It 'Convert-VDisk without a destination refuses a remote source by a typed error' {
        Convert-VDisk -Path $script:uri -Format qcow2 -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption*'
    }
}

Describe 'Writing NBD exports' {
    BeforeEach {
        $socket = Join-Path $script:Root "m$([guid]::NewGuid().ToString('N').Substring(0, 6)).sock"
        $script:memory = Start-ExternalNbd nbdkit @('-f', '-U', $socket, 'memory', '8M') $socket
        $script:target = "nbd+unix:///?socket=$socket"
        $script:source = Join-Path $script:Root 'source.qcow2'
        if (-not (Test-Path $script:source)) {
            qemu-img create -q -f qcow2 $script:source 8M
            qemu-io -f qcow2 -c 'write -P 0x21 1M 1M' -c 'write -P 0x42 7M 4k' $script:source | Out-Null
        }
        qemu-io -f raw -c 'write -P 0xee 0 8M' $script:target | Out-Null
    }
    AfterEach {
        Stop-Process -Id $script:memory.Id
    }

    It 'Convert-VDisk -NoCreate writes the image into the export, zeros included' {
        Convert-VDisk -Path $script:source -Destination $script:target -NoCreate
        qemu-img compare -f qcow2 $script:source -F raw $script:target
        $LASTEXITCODE | Should -Be 0
    }

    It 'Copy-VDiskData -NoCreate writes into the export' {
        Copy-VDiskData -Path $script:source -Destination $script:target -NoCreate -BlockSize 1MB
        qemu-img compare -f qcow2 $script:source -F raw $script:target
        $LASTEXITCODE | Should -Be 0
    }

    It 'an export is never created: without -NoCreate the error is typed' {
        Convert-VDisk -Path $script:source -Destination $script:target -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
        $err[0].Exception.Message | Should -Match 'NBD locations cannot be created'
    }

    It 'a source larger than the export is refused naming both sizes' {
        $big = Join-Path $script:Root 'big.qcow2'
        qemu-img create -q -f qcow2 $big 16M
        Convert-VDisk -Path $big -Destination $script:target -NoCreate -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption*'
        $err[0].Exception.Message | Should -Match '8388608 bytes.*16777216 bytes'
    }
}

Describe 'Salvaging reads from an export with bad sectors' {
    BeforeAll {
        # nbdkit's ddrescue filter fails reads of exactly the ranges a GNU ddrescue map marks bad.
        $script:raw = Join-Path $script:Root 'bad.raw'
        [IO.File]::WriteAllBytes($script:raw, (New-TestBytes -Length 4MB -Seed 5))
        $map = Join-Path $script:Root 'bad.map'
        @('# Mapfile', '0x0 ? 1', '0x0 0x100000 +', '0x100000 0x200 -', '0x100200 0x1ffe00 +', '0x300000 0x10000 -', '0x310000 0xf0000 +') | Set-Content $map
        $socket = Join-Path $script:Root 'bad.sock'
        $script:bad = Start-ExternalNbd nbdkit @('-f', '-r', '-U', $socket, '--filter=ddrescue', 'file', $script:raw, "ddrescue-mapfile=$map") $socket
        $script:badUri = "nbd+unix:///?socket=$socket"

        # What a salvaged copy must read as: the source with the bad ranges zeroed.
        $bytes = [IO.File]::ReadAllBytes($script:raw)
        [Array]::Clear($bytes, 0x100000, 0x200)
        [Array]::Clear($bytes, 0x300000, 0x10000)
        $script:expected = Join-Path $script:Root 'expected.raw'
        [IO.File]::WriteAllBytes($script:expected, $bytes)
    }
    AfterAll {
        Stop-Process -Id $script:bad.Id
    }

    It 'without -Salvage the read error is a typed VDisk error naming the offset' {
        Convert-VDisk -Path $script:badUri -Destination (Join-Path $script:Root 'fail.raw') -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.IOError*'
        $err[0].Exception.Message | Should -Match 'at offset \d+.*NBD READ'
        Test-Path (Join-Path $script:Root 'fail.raw') | Should -BeFalse
    }

    It 'Convert-VDisk -Salvage reports exactly the bad ranges and copies the rest' {
        $out = Join-Path $script:Root 'salvaged.qcow2'
        $result = Convert-VDisk -Path $script:badUri -Destination $out -Salvage -WarningVariable warnings -WarningAction SilentlyContinue
        $result.Path | Should -Be $out
        ($result.BadRanges | ForEach-Object { '{0}+{1}' -f $_.Offset, $_.Length }) | Should -Be @('1048576+512', '3145728+65536')
        $result.BadBytes | Should -Be 66048
        $warnings.Count | Should -Be 2
        qemu-img compare -f raw $script:expected -F qcow2 $out
        $LASTEXITCODE | Should -Be 0
    }

    It 'Copy-VDiskData -Salvage does the same (dd_rescue)' {
        $out = Join-Path $script:Root 'dd.raw'
        $result = Copy-VDiskData -Path $script:badUri -Destination $out -BlockSize 64KB -Salvage -WarningAction SilentlyContinue
        ($result.BadRanges | ForEach-Object { '{0}+{1}' -f $_.Offset, $_.Length }) | Should -Be @('1048576+512', '3145728+65536')
        qemu-img compare -f raw $script:expected -F raw $out
        $LASTEXITCODE | Should -Be 0
    }
}
