#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# NBD serving and attaching, judged by qemu-img and qemu-io (clients and checkers nobody here wrote).

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root
}

Describe 'Start-VDiskServer' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f qcow2 served.qcow2 16M
        qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 9M 64k' served.qcow2 | Out-Null
    }
    AfterAll {
        Get-VDiskServer | Stop-VDiskServer
        Pop-Location
    }

    It 'serves on a free port a disk qemu-img finds identical' {
        $server = Start-VDiskServer -Path served.qcow2 -Port 0
        try {
            $server.Port | Should -BeGreaterThan 0
            $server.Uri | Should -Be "nbd://127.0.0.1:$($server.Port)/served.qcow2"
            $server.Writable | Should -BeFalse
            qemu-img compare -f qcow2 (Join-Path $script:Root served.qcow2) -F raw $server.Uri
            $LASTEXITCODE | Should -Be 0
        } finally {
            $server | Stop-VDiskServer
        }
    }

    It 'lists running servers and stops them from the pipeline' {
        $a = Start-VDiskServer -Path served.qcow2 -Port 0 -ExportName a
        $b = Start-VDiskServer -Path served.qcow2 -Port 0 -ExportName b
        (Get-VDiskServer).Id | Should -Contain $a.Id
        (Get-VDiskServer -Id $b.Id).ExportName | Should -Be 'b'
        Get-VDiskServer | Stop-VDiskServer
        Get-VDiskServer | Should -BeNullOrEmpty
        Get-VDiskServer -Id $a.Id -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.ServerNotFound*'
    }

    It 'takes writes from qemu-io into the image, flushed on stop' {
        $server = Start-VDiskServer -Path served.qcow2 -Port 0 -Writable
        qemu-io -f raw -c 'write -P 0xab 4M 128k' -c flush $server.Uri | Out-Null
        $LASTEXITCODE | Should -Be 0
        $server | Stop-VDiskServer
        qemu-img check -q -f qcow2 (Join-Path $script:Root served.qcow2)
        $LASTEXITCODE | Should -Be 0
        qemu-io -f qcow2 -c 'read -P 0xab 4M 128k' (Join-Path $script:Root served.qcow2) | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'refuses an unknown bitmap with a typed error' {
        Start-VDiskServer -Path served.qcow2 -Port 0 -Bitmap nosuch -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.InvalidOption*'
    }

    It 'stops its servers, flushing them, when the session ends' {
        $image = Join-Path $script:Root 'session.qcow2'
        qemu-img create -q -f qcow2 $image 8M
        $module = (Resolve-Path $script:ModulePath).Path
        # The pwsh of this session (beside its own files, whether installed or run as a dotnet tool).
        $pwsh = Join-Path $PSHOME $(if ($IsWindows) { 'pwsh.exe' } else { 'pwsh' })
        & $pwsh -NoProfile -Command "Import-Module '$module'; `$s = Start-VDiskServer -Path '$image' -Port 0 -Writable; qemu-io -f raw -c 'write -P 0xcd 0 64k' `$s.Uri | Out-Null; Remove-Module VDiskPS; Import-Module '$module'; `$t = Start-VDiskServer -Path '$image' -Port 0 -Writable; qemu-io -f raw -c 'write -P 0xef 1M 64k' `$t.Uri | Out-Null; exit 0"
        $LASTEXITCODE | Should -Be 0
        qemu-img check -q -f qcow2 $image
        $LASTEXITCODE | Should -Be 0
        qemu-io -f qcow2 -c 'read -P 0xcd 0 64k' -c 'read -P 0xef 1M 64k' $image | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'serves over TLS with a certificate from a PFX file' {
        $dir = Join-Path $script:Root 'tls'
        New-Item -ItemType Directory $dir | Out-Null
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$dir/ca-cert.pem" -days 2 -subj /CN=127.0.0.1 -addext 'subjectAltName=IP:127.0.0.1' -addext 'basicConstraints=critical,CA:TRUE' 2>$null
        openssl pkcs12 -export -out "$dir/server.pfx" -inkey "$dir/key.pem" -in "$dir/ca-cert.pem" -passout pass:
        $server = Start-VDiskServer -Path served.qcow2 -Port 0 -ExportName disk -Certificate "$dir/server.pfx"
        try {
            $server.Tls | Should -BeTrue
            qemu-img info --object "tls-creds-x509,id=tls0,dir=$dir,endpoint=client" --image-opts "driver=nbd,host=127.0.0.1,port=$($server.Port),export=disk,tls-creds=tls0" | Out-Null
            $LASTEXITCODE | Should -Be 0
        } finally {
            $server | Stop-VDiskServer
        }
    }

    It 'does nothing with -WhatIf' {
        Start-VDiskServer -Path served.qcow2 -Port 0 -WhatIf | Should -BeNullOrEmpty
        Get-VDiskServer | Should -BeNullOrEmpty
    }
}

# There is no nbd kernel module here, so Mount-VDisk takes its nbdfuse path (libnbd-bin); /dev/nbdN with nbd-client is not exercised.
Describe 'Mount-VDisk' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f qcow2 mounted.qcow2 8M
        qemu-io -f qcow2 -c 'write -P 0x11 0 64k' mounted.qcow2 | Out-Null
    }
    AfterAll { Pop-Location }

    It 'attaches a disk whose bytes can be written with dd, and Dismount-VDisk flushes them into the image' {
        $mount = Mount-VDisk -Path mounted.qcow2
        try {
            $mount.Method | Should -Be 'nbdfuse'
            $mount.ReadOnly | Should -BeFalse
            Test-Path $mount.DevicePath | Should -BeTrue
            (Get-Item $mount.DevicePath).Length | Should -Be 8MB
            $pattern = Join-Path $script:Root 'pattern.bin'
            [System.IO.File]::WriteAllBytes($pattern, [byte[]] (@(0x77) * 65536))
            dd "if=$pattern" "of=$($mount.DevicePath)" bs=64k seek=16 conv=notrunc status=none
            $LASTEXITCODE | Should -Be 0
        } finally {
            $mount | Dismount-VDisk
        }
        Test-Path $mount.DevicePath | Should -BeFalse
        $image = Join-Path $script:Root mounted.qcow2
        qemu-img check -q -f qcow2 $image
        $LASTEXITCODE | Should -Be 0
        qemu-io -f qcow2 -c 'read -P 0x77 1M 64k' -c 'read -P 0x11 0 64k' $image | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'attaches read-only: the guest disk cannot be written' {
        $mount = Mount-VDisk -Path mounted.qcow2 -ReadOnly
        try {
            $mount.ReadOnly | Should -BeTrue
            dd if=/dev/zero "of=$($mount.DevicePath)" bs=4k count=1 conv=notrunc status=none 2>$null
            $LASTEXITCODE | Should -Not -Be 0
        } finally {
            Dismount-VDisk -Path mounted.qcow2
        }
        qemu-io -f qcow2 -c 'read -P 0x11 0 64k' (Join-Path $script:Root mounted.qcow2) | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'says when an image is not mounted' {
        Dismount-VDisk -Path mounted.qcow2 -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotMounted*'
    }
}
