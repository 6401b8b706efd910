#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# cloop and DMG, the read-only formats (QEMU reads them but cannot create them): images written here
# from the published layouts (cloop's create_compressed_fs, UDIF's koly trailer, XML property list and
# mish block tables), which qemu-img reads first as their raw content; then every reading cmdlet is
# judged by qemu-img. bzip2 chunks come from the system bzip2 (Debian's qemu-img has no dmg-bz2
# module, so the converted copy is what qemu-img compares).

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root

    function ConvertTo-BigEndian([uint64] $Value, [int] $Width) {
        $bytes = [BitConverter]::GetBytes($Value)[0..($Width - 1)]
        [Array]::Reverse($bytes)
        , [byte[]]$bytes
    }

    function Write-At([byte[]] $Target, [int] $Offset, [byte[]] $Bytes) { [Array]::Copy($Bytes, 0, $Target, $Offset, $Bytes.Length) }

    function Compress-Zlib([byte[]] $Data) {
        $ms = [IO.MemoryStream]::new()
        $z = [IO.Compression.ZLibStream]::new($ms, [IO.Compression.CompressionLevel]::Optimal, $true)
        $z.Write($Data, 0, $Data.Length)
        $z.Dispose()
        , $ms.ToArray()
    }

    function Compress-SystemBzip2([byte[]] $Data) {
        $file = Join-Path $script:Root ([guid]::NewGuid().ToString('N'))
        [IO.File]::WriteAllBytes($file, $Data)
        bzip2 -9 $file
        $bytes = [IO.File]::ReadAllBytes("$file.bz2")
        Remove-Item "$file.bz2"
        , $bytes
    }

    # The content the images hold: data, an all-zero run and data in the last sector.
    $script:Content = [byte[]]::new(1MB)
    [Array]::Copy((New-TestBytes -Length 200000 -Seed 1), 0, $script:Content, 0, 200000)
    [Array]::Copy((New-TestBytes -Length 70000 -Seed 2), 0, $script:Content, 700001, 70000)
    [Array]::Copy((New-TestBytes -Length 512 -Seed 3), 0, $script:Content, 1MB - 512, 512)
    [IO.File]::WriteAllBytes((Join-Path $script:Root 'content.raw'), $script:Content)

    # cloop 2.0: 128-byte preamble, block size and count (big-endian), n+1 offsets, zlib blocks.
    function New-CloopImage([string] $Name, [int] $BlockSize = 64KB) {
        $blocks = $script:Content.Length / $BlockSize
        $streams = for ($i = 0; $i -lt $blocks; $i++) {
            $block = [byte[]]::new($BlockSize)
            [Array]::Copy($script:Content, $i * $BlockSize, $block, 0, $BlockSize)
            , (Compress-Zlib $block)
        }
        $header = [byte[]]::new(136 + 8 * ($blocks + 1))
        Write-At $header 0 ([Text.Encoding]::ASCII.GetBytes("#!/bin/sh`n#V2.0 Format`nmodprobe cloop file=`$0 && mount -r -t iso9660 /dev/cloop `$1`nexit `$?`n"))
        Write-At $header 128 (ConvertTo-BigEndian $BlockSize 4)
        Write-At $header 132 (ConvertTo-BigEndian $blocks 4)
        $at = [uint64]$header.Length
        for ($i = 0; $i -le $blocks; $i++) {
            Write-At $header (136 + 8 * $i) (ConvertTo-BigEndian $at 8)
            if ($i -lt $blocks) { $at += $streams[$i].Length }
        }
        $out = [IO.File]::Create((Join-Path $script:Root $Name))
        try { $out.Write($header, 0, $header.Length); foreach ($s in $streams) { $out.Write($s, 0, $s.Length) } } finally { $out.Dispose() }
    }

    # UDIF: chunks of 128 sectors in the data fork (zero when all zero, else the given types in turn),
    # one mish block table as base64 in the XML property list, then the 512-byte koly trailer.
    function New-DmgImage([string] $Name, [string[]] $Types) {
        $codes = @{ zero = 0; raw = 1; zlib = 0x80000005u; bzip2 = 0x80000006u; lzfse = 0x80000007u }
        $sectors = $script:Content.Length / 512
        $out = [IO.File]::Create((Join-Path $script:Root $Name))
        try {
            $entries = [Collections.Generic.List[object]]::new()
            $n = 0
            for ($s = 0; $s -lt $sectors; $s += 128) {
                $data = [byte[]]::new(128 * 512)
                [Array]::Copy($script:Content, $s * 512, $data, 0, $data.Length)
                $type = if ([Linq.Enumerable]::All($data, [Func[byte, bool]] { param($b) $b -eq 0 })) { 'zero' } else { $Types[$n++ % $Types.Count] }
                $stored = switch ($type) {
                    'zero' { , [byte[]]::new(0) }
                    'raw' { , $data }
                    'zlib' { , (Compress-Zlib $data) }
                    'bzip2' { , (Compress-SystemBzip2 $data) }
                    'lzfse' { , [Text.Encoding]::ASCII.GetBytes('bvx2 not lzfse') }
                }
                $entries.Add(@{ Type = $codes[$type]; Sector = $s; Offset = $out.Position; Length = $stored.Length })
                $out.Write($stored, 0, $stored.Length)
            }
            $entries.Add(@{ Type = 0xffffffffu; Sector = $sectors; Offset = $out.Position; Length = 0 })
            $dataLength = $out.Position
            $mish = [byte[]]::new(204 + 40 * $entries.Count)
            Write-At $mish 0 ([Text.Encoding]::ASCII.GetBytes('mish'))
            Write-At $mish 4 (ConvertTo-BigEndian 1 4)
            Write-At $mish 0x10 (ConvertTo-BigEndian $sectors 8)
            Write-At $mish 0xC8 (ConvertTo-BigEndian $entries.Count 4)
            for ($i = 0; $i -lt $entries.Count; $i++) {
                $e = $entries[$i]
                $at = 204 + 40 * $i
                Write-At $mish $at (ConvertTo-BigEndian $e.Type 4)
                Write-At $mish ($at + 8) (ConvertTo-BigEndian $e.Sector 8)
                Write-At $mish ($at + 0x10) (ConvertTo-BigEndian ($(if ($e.Type -eq 0xffffffffu) { 0 } else { 128 })) 8)
                Write-At $mish ($at + 0x18) (ConvertTo-BigEndian $e.Offset 8)
                Write-At $mish ($at + 0x20) (ConvertTo-BigEndian $e.Length 8)
            }
            $xml = "<?xml version=`"1.0`" encoding=`"UTF-8`"?>`n<!DOCTYPE plist PUBLIC `"-//Apple//DTD PLIST 1.0//EN`" `"http://www.apple.com/DTDs/PropertyList-1.0.dtd`">`n" +
                "<plist version=`"1.0`"><dict><key>resource-fork</key><dict><key>blkx</key><array><dict>" +
                "<key>Data</key><data>`n$([Convert]::ToBase64String($mish, 'InsertLineBreaks'))`n</data><key>Name</key><string>whole disk</string>" +
                "</dict></array></dict></dict></plist>`n"
            $plist = [Text.Encoding]::UTF8.GetBytes($xml)
            $plistAt = $out.Position
            $out.Write($plist, 0, $plist.Length)
            $koly = [byte[]]::new(512)
            Write-At $koly 0 ([Text.Encoding]::ASCII.GetBytes('koly'))
            Write-At $koly 4 (ConvertTo-BigEndian 4 4)
            Write-At $koly 8 (ConvertTo-BigEndian 512 4)
            Write-At $koly 0x20 (ConvertTo-BigEndian $dataLength 8)
            Write-At $koly 0xD8 (ConvertTo-BigEndian $plistAt 8)
            Write-At $koly 0xE0 (ConvertTo-BigEndian $plist.Length 8)
            Write-At $koly 0x1EC (ConvertTo-BigEndian $sectors 8)
            $out.Write($koly, 0, 512)
        } finally { $out.Dispose() }
    }

    Push-Location TestDrive:
    New-CloopImage live.cloop
    New-DmgImage mac.dmg zlib, raw
    New-DmgImage bz.dmg bzip2, zlib
    New-DmgImage new.dmg zlib, lzfse
    Pop-Location
}

Describe 'The built images, judged by qemu-img first' {
    It 'qemu-img reads <Name> as the raw content' -TestCases @(
        @{ Name = 'live.cloop'; Format = 'cloop' }
        @{ Name = 'mac.dmg'; Format = 'dmg' }
    ) {
        param($Name, $Format)
        qemu-img compare -f raw -F $Format (Join-Path $script:Root 'content.raw') (Join-Path $script:Root $Name)
        $LASTEXITCODE | Should -Be 0
    }

    It 'the bzip2 image holds bzip2 chunks qemu-img here cannot read' {
        $output = qemu-img compare -f raw -F dmg (Join-Path $script:Root 'content.raw') (Join-Path $script:Root 'bz.dmg') 2>&1 | Out-String
        $LASTEXITCODE | Should -Not -Be 0
        $output | Should -Match 'dmg-bzip2 module is missing'
    }
}

Describe 'Reading cloop and DMG images' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'Get-VDisk reports <Name> as qemu-img info does' -TestCases @(
        @{ Name = 'live.cloop'; Format = 'cloop' }
        @{ Name = 'mac.dmg'; Format = 'dmg' }
    ) {
        param($Name, $Format)
        $info = Get-VDisk $Name
        $expected = qemu-img info --output=json -f $Format (Join-Path $script:Root $Name) 2>$null | ConvertFrom-Json
        $info.Format | Should -Be $Format
        $info.Size | Should -Be $expected.'virtual-size'
        $info.FileSize | Should -Be (Get-Item $Name).Length
    }

    It 'Test-VDisk finds <Name> valid' -TestCases @(@{ Name = 'live.cloop' }, @{ Name = 'mac.dmg' }) {
        param($Name)
        Test-VDisk $Name | Should -BeTrue
    }

    It 'Get-VDiskMap covers the disk: compressed data for cloop, zero chunks as zeros for DMG' {
        $cloop = @(Get-VDiskMap live.cloop)
        ($cloop | Measure-Object Length -Sum).Sum | Should -Be 1MB
        $cloop | ForEach-Object { $_.Data | Should -BeTrue; $_.Compressed | Should -BeTrue }
        $dmg = @(Get-VDiskMap mac.dmg)
        ($dmg | Measure-Object Length -Sum).Sum | Should -Be 1MB
        # Engine-judged: qemu's dmg driver has no block status (qemu-img map calls every sector data).
        # The content's all-zero 64 KiB chunks (256 KiB to 640 KiB, 768 KiB to 960 KiB) are zero chunks.
        $zero = @($dmg | Where-Object { -not $_.Data })
        $zero.Count | Should -Be 2
        $zero[0].Start | Should -Be 256KB
        $zero[0].Length | Should -Be 384KB
        $zero[1].Start | Should -Be 768KB
        $zero[1].Length | Should -Be 192KB
    }

    It 'Measure-VDisk of <Name> as qcow2 needs what qemu-img measure says' -TestCases @(@{ Name = 'live.cloop'; Format = 'cloop' }) {
        param($Name, $Format)
        $m = Measure-VDisk $Name -Format qcow2
        $expected = qemu-img measure --output=json -f $Format -O qcow2 (Join-Path $script:Root $Name) | ConvertFrom-Json
        $m.Required | Should -Be $expected.required
        $m.FullyAllocated | Should -Be $expected.'fully-allocated'
    }

    It 'Measure-VDisk of a DMG counts its zero chunks out, where qemu-img counts every sector' {
        $m = Measure-VDisk mac.dmg -Format qcow2
        $expected = qemu-img measure --output=json -f dmg -O qcow2 (Join-Path $script:Root 'mac.dmg') 2>$null | ConvertFrom-Json
        $m.FullyAllocated | Should -Be $expected.'fully-allocated'
        $m.Required | Should -BeLessThan $expected.required
    }

    It 'Compare-VDisk finds <Name> the same as the raw content, as qemu-img compare does' -TestCases @(
        @{ Name = 'live.cloop' }, @{ Name = 'mac.dmg' }, @{ Name = 'bz.dmg' }
    ) {
        param($Name)
        Compare-VDisk -ReferencePath content.raw -DifferencePath $Name -Quiet | Should -BeTrue
    }

    It 'Convert-VDisk turns <Name> into a <Target> that qemu-img compare finds identical to the content' -TestCases @(
        @{ Name = 'live.cloop'; Target = 'qcow2' }
        @{ Name = 'mac.dmg'; Target = 'vhdx' }
        @{ Name = 'bz.dmg'; Target = 'qcow2' }
    ) {
        param($Name, $Target)
        $out = "$Name.$Target"
        Convert-VDisk -Path $Name -Destination $out
        qemu-img compare -f raw -F $Target (Join-Path $script:Root 'content.raw') (Join-Path $script:Root $out)
        $LASTEXITCODE | Should -Be 0
        qemu-img check -f $Target (Join-Path $script:Root $out) | Out-Null
        $LASTEXITCODE | Should -Be 0
    }
}

Describe 'What cloop and DMG images cannot do' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'Convert-VDisk refuses -Format <Format> for the output, naming what it writes, and leaves no file' -TestCases @(@{ Format = 'cloop' }, @{ Format = 'dmg' }) {
        param($Format)
        { Convert-VDisk -Path content.raw -Destination "out.$Format" -Format $Format } | Should -Throw -ExpectedMessage "*reads $Format images but does not write them*"
        Test-Path "out.$Format" | Should -BeFalse
    }

    It 'refuses to resize <Name> (read-only), leaving it unchanged' -TestCases @(@{ Name = 'live.cloop' }, @{ Name = 'mac.dmg' }) {
        param($Name)
        $before = (Get-FileHash $Name).Hash
        Resize-VDisk -Path $Name -SizeBytes 2MB -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
        (Get-FileHash $Name).Hash | Should -Be $before
    }

    It 'refuses an lzfse chunk when converting, naming lzfse and the chunk, and leaves no output' {
        Convert-VDisk -Path new.dmg -Destination new.qcow2 -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
        $failure[0].Exception.Message | Should -Match 'lzfse'
        $failure[0].Exception.Message | Should -Match 'blkx entry 0, chunk \d+ at offset'
        Test-Path new.qcow2 | Should -BeFalse
        # qemu-img fails the same image (it has no lzfse module here either).
        qemu-img convert -f dmg -O qcow2 (Join-Path $script:Root 'new.dmg') (Join-Path $script:Root 'q.qcow2') 2>$null
        $LASTEXITCODE | Should -Not -Be 0
    }

    It 'reports a cloop image with a zero block size as VDisk.CorruptImage, as qemu-img refuses it' {
        $bytes = [IO.File]::ReadAllBytes((Join-Path $script:Root 'live.cloop'))
        Write-At $bytes 128 ([byte[]]::new(4))
        [IO.File]::WriteAllBytes((Join-Path $script:Root 'bad.cloop'), $bytes)
        (qemu-img info (Join-Path $script:Root 'bad.cloop') 2>&1 | Out-String) | Should -Match 'block_size cannot be zero'
        Get-VDisk bad.cloop -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.CorruptImage*'
        $failure[0].Exception.Message | Should -Match 'block size at offset 128'
    }
}
