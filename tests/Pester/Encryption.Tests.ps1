#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# Encrypted images through the cmdlets: -Password (a SecureString) and -Encryption luks, judged by
# qemu-img and qemu-io given the same secret (--object secret), and cryptsetup for raw LUKS. A missing
# or wrong password is a typed error; the password shows nowhere: not in errors, verbose output or
# the objects written.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    Set-Location TestDrive:
    $script:Secret = 'correct horse 7'
    $script:Password = ConvertTo-SecureString $script:Secret -AsPlainText -Force
    $script:Wrong = ConvertTo-SecureString 'not the password' -AsPlainText -Force
    $script:SecretObject = "secret,id=sec0,data=$script:Secret"

    # qemu-img compare of an encrypted image (driver options) against a plain raw file.
    function Assert-QemuSame([string] $Encrypted, [string] $Driver, [string] $Raw) {
        $keyOption = if ($Driver -eq 'luks') { 'key-secret=sec0' } else { 'encrypt.key-secret=sec0' }
        $output = qemu-img compare --object $script:SecretObject --image-opts "driver=$Driver,$keyOption,file.filename=$Encrypted" "driver=raw,file.filename=$Raw" 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($output | Out-String)
    }

    # qemu-img creating a LUKS header: qemu times its PBKDF2 benchmark with the thread's coarse CPU clock
    # and, at random on a fast idle machine, gives up with "Unable to get accurate CPU usage" having
    # written nothing (4 times in 10 on a 2-core EPYC with SHA-NI); the command is run again then, up to 20 times.
    function Invoke-QemuImgKeyed {
        for ($attempt = 1; $attempt -le 20; $attempt++) {
            $output = qemu-img @args 2>&1
            if ($LASTEXITCODE -eq 0 -or "$output" -notmatch 'Unable to get accurate CPU usage') { break }
        }
        $LASTEXITCODE | Should -Be 0 -Because ($output | Out-String)
    }

    function New-Pattern([string] $Path) {
        qemu-img create -f raw -q $Path 8M
        qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 3M 64k' -c 'write -P 0x11 7M 512k' $Path | Out-Null
    }
}

Describe 'New-VDisk and Convert-VDisk -Encryption luks' {
    It 'converts a raw image into an encrypted qcow2 that qemu-img reads with the same secret' {
        New-Pattern plain.raw
        Convert-VDisk plain.raw -Destination enc.qcow2 -Encryption luks -Password $script:Password
        Assert-QemuSame enc.qcow2 qcow2 plain.raw
        $check = qemu-img check --object $script:SecretObject --image-opts "driver=qcow2,encrypt.key-secret=sec0,file.filename=enc.qcow2" 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($check | Out-String)
    }

    It 'converts into a raw LUKS container that cryptsetup opens with the passphrase' {
        New-Pattern plain2.raw
        Convert-VDisk plain2.raw -Destination enc.luks -Encryption luks -Password $script:Password
        Assert-QemuSame enc.luks luks plain2.raw
        # Debian installs cryptsetup in /usr/sbin, which a non-root PATH may lack.
        $cryptsetup = (Get-Command cryptsetup -ErrorAction SilentlyContinue).Source ?? '/usr/sbin/cryptsetup'
        $script:Secret | & $cryptsetup open --test-passphrase --type luks1 enc.luks
        $LASTEXITCODE | Should -Be 0
    }

    It 'creates an empty encrypted qcow2 that qemu-io writes and the module reads back' {
        New-VDisk new.qcow2 -SizeBytes 8MB -Encryption luks -Password $script:Password | Out-Null
        qemu-io --object $script:SecretObject --image-opts "driver=qcow2,encrypt.key-secret=sec0,file.filename=new.qcow2" -c 'write -P 0x77 2M 128k' | Out-Null
        Convert-VDisk new.qcow2 -Destination new.raw -Password $script:Password
        Assert-QemuSame new.qcow2 qcow2 new.raw
        (Get-VDisk new.qcow2 -Password $script:Password).Encrypted | Should -BeTrue
    }

    It 'refuses -Encryption without -Password, creating nothing' {
        New-Pattern plain3.raw
        Convert-VDisk plain3.raw -Destination nopw.qcow2 -Encryption luks -ErrorVariable errors -ErrorAction SilentlyContinue
        $errors[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.PasswordRequired*'
        Test-Path nopw.qcow2 | Should -BeFalse
    }
}

Describe 'Reading encrypted images' {
    BeforeAll {
        Invoke-QemuImgKeyed create -q --object $script:SecretObject -f qcow2 -o 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=100' qemu.qcow2 8M
        qemu-io --object $script:SecretObject --image-opts "driver=qcow2,encrypt.key-secret=sec0,file.filename=qemu.qcow2" -c 'write -P 0x3c 1M 256k' | Out-Null
    }

    It 'reads a qemu-made encrypted qcow2 with -Password, bit-exact' {
        Convert-VDisk qemu.qcow2 -Destination qemu.raw -Password $script:Password
        Assert-QemuSame qemu.qcow2 qcow2 qemu.raw
        Compare-VDisk qemu.qcow2 qemu.raw -Password $script:Password | Should -BeTrue
    }

    It 'says VDisk.PasswordRequired without a password and VDisk.InvalidPassword with a wrong one, with advice' {
        Convert-VDisk qemu.qcow2 -Destination x.raw -ErrorVariable missing -ErrorAction SilentlyContinue
        $missing[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.PasswordRequired*'
        $missing[0].ErrorDetails.Message | Should -BeLike '*-Password*'
        Convert-VDisk qemu.qcow2 -Destination y.raw -Password $script:Wrong -ErrorVariable wrong -ErrorAction SilentlyContinue
        $wrong[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidPassword*'
        Test-Path x.raw, y.raw | Should -Be @($false, $false)
    }

    It 'never shows the password: not in errors, verbose output or the objects written' {
        $verbose = Convert-VDisk qemu.qcow2 -Destination z.raw -Password $script:Password -Verbose -PassThru 4>&1 | Out-String
        $info = Get-VDisk qemu.qcow2 -Password $script:Password | Format-List * | Out-String
        $json = Get-VDisk qemu.qcow2 -Password $script:Password -AsQemuJson
        Convert-VDisk qemu.qcow2 -Destination w.raw -Password $script:Wrong -ErrorVariable wrong -ErrorAction SilentlyContinue
        $errorText = $wrong | Format-List * -Force | Out-String
        foreach ($text in $verbose, $info, $json, $errorText) {
            $text | Should -Not -BeLike "*$script:Secret*"
        }
    }

    It 'maps, tests and measures an encrypted image with -Password, as qemu-img does with the secret' {
        $qemuMap = (qemu-img map --output=json --object $script:SecretObject --image-opts "driver=qcow2,encrypt.key-secret=sec0,file.filename=qemu.qcow2") -join "`n" | ConvertFrom-Json
        $map = @(Get-VDiskMap qemu.qcow2 -Password $script:Password)
        ($map | Where-Object Data | Measure-Object Length -Sum).Sum | Should -Be ($qemuMap | Where-Object data | Measure-Object length -Sum).Sum
        Test-VDisk qemu.qcow2 -Password $script:Password | Should -BeTrue
        $measured = Measure-VDisk -Path qemu.qcow2 -Format qcow2 -Password $script:Password
        $qemuMeasure = (qemu-img measure --output=json -O qcow2 --object $script:SecretObject --image-opts "driver=qcow2,encrypt.key-secret=sec0,file.filename=qemu.qcow2") -join "`n" | ConvertFrom-Json
        $measured.Required | Should -Be $qemuMeasure.required
    }

    It 'reads a raw LUKS container qemu-img made, through every reading cmdlet' {
        Invoke-QemuImgKeyed create -q --object $script:SecretObject -f luks -o 'key-secret=sec0,iter-time=10' made.luks 4M
        qemu-io --object $script:SecretObject --image-opts "driver=luks,key-secret=sec0,file.filename=made.luks" -c 'write -P 0x6b 512k 64k' | Out-Null
        (Get-VDisk made.luks -Password $script:Password).Format | Should -Be 'luks'
        Convert-VDisk made.luks -Destination made.raw -Password $script:Password
        Assert-QemuSame made.luks luks made.raw
        Compare-VDisk made.luks made.raw -Password $script:Password | Should -BeTrue
        @(Get-VDiskMap made.luks -Password $script:Password).Count | Should -BeGreaterThan 0
        Test-VDisk made.luks -Password $script:Password | Should -BeTrue
    }

    It 'passes the password to a conversion run as a job' {
        $job = Convert-VDisk qemu.qcow2 -Destination job.raw -Password $script:Password -AsJob
        $job | Wait-Job -Timeout 120 | Out-Null
        $job.State | Should -Be 'Completed'
        Assert-QemuSame qemu.qcow2 qcow2 job.raw
    }
}
