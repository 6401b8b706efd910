#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# Images read over http:// and https:// from a real nginx (started here from a generated config in
# TestDrive, stopped by its PID), judged by qemu-img on the local originals.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root

    function Get-FreePort {
        $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
        $listener.Start()
        try { $listener.LocalEndpoint.Port } finally { $listener.Stop() }
    }

    $script:Nginx = Join-Path $script:Root 'nginx'
    $script:Www = Join-Path $script:Nginx 'www'
    foreach ($folder in 'www/private', 'www/noranges', 'tmp') {
        New-Item -ItemType Directory -Path (Join-Path $script:Nginx $folder) -Force | Out-Null
    }
    $key = Join-Path $script:Nginx 'key.pem'
    $cert = Join-Path $script:Nginx 'cert.pem'
    openssl req -x509 -newkey rsa:2048 -nodes -keyout $key -out $cert -days 2 -subj '/CN=127.0.0.1' -addext 'subjectAltName=IP:127.0.0.1' 2>$null
    $script:Password = 'pester-Pa55word'
    $hash = openssl passwd -apr1 $script:Password
    Set-Content -Path (Join-Path $script:Nginx 'htpasswd') -Value "bob:$hash"
    $script:Port = Get-FreePort
    $script:TlsPort = Get-FreePort
    $d = $script:Nginx
    $locations = "root $d/www; location /private/ { auth_basic `"vdisk`"; auth_basic_user_file $d/htpasswd; } location /noranges/ { max_ranges 0; }"
    Set-Content -Path (Join-Path $d 'nginx.conf') -Value @"
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 64; }
http {
    log_format ranges '`$request_method `$uri "`$http_range" `$status';
    access_log $d/access.log ranges;
    client_body_temp_path $d/tmp/body; proxy_temp_path $d/tmp/proxy; fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi; scgi_temp_path $d/tmp/scgi;
    default_type application/octet-stream;
    server { listen 127.0.0.1:$($script:Port); $locations }
    server { listen 127.0.0.1:$($script:TlsPort) ssl; ssl_certificate $cert; ssl_certificate_key $key; $locations }
}
"@
    $script:NginxProcess = Start-Process -FilePath nginx -ArgumentList '-p', $d, '-c', "$d/nginx.conf", '-e', "$d/error.log", '-g', '"daemon off;"' -PassThru
    $deadline = (Get-Date).AddSeconds(15)
    foreach ($port in $script:Port, $script:TlsPort) {
        while ($true) {
            try { [System.Net.Sockets.TcpClient]::new('127.0.0.1', $port).Dispose(); break }
            catch { if ((Get-Date) -gt $deadline) { throw "nginx did not start: $(Get-Content "$d/error.log" -Raw)" }; Start-Sleep -Milliseconds 50 }
        }
    }

    $script:Url = "http://127.0.0.1:$($script:Port)"
    $script:TlsUrl = "https://127.0.0.1:$($script:TlsPort)"
    $script:Credential = [pscredential]::new('bob', (ConvertTo-SecureString $script:Password -AsPlainText -Force))

    foreach ($name in 'disk.qcow2', 'private/disk.qcow2', 'noranges/disk.qcow2') {
        $path = Join-Path $script:Www $name
        qemu-img create -q -f qcow2 $path 16M
        qemu-io -f qcow2 -c 'write -P 0x5a 0 3M' -c 'write -P 0x6b 9M 64k' $path | Out-Null
    }
    qemu-img create -q -f qcow2 -b disk.qcow2 -F qcow2 (Join-Path $script:Www 'top.qcow2')
    qemu-io -f qcow2 -c 'write -P 0x7c 1M 64k' (Join-Path $script:Www 'top.qcow2') | Out-Null
    qemu-img convert -f qcow2 -O vhdx (Join-Path $script:Www 'disk.qcow2') (Join-Path $script:Www 'disk.vhdx')
    qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized (Join-Path $script:Www 'disk.qcow2') (Join-Path $script:Www 'noranges/stream.vmdk')
}

AfterAll {
    if ($script:NginxProcess -and -not $script:NginxProcess.HasExited) {
        kill -TERM $script:NginxProcess.Id
        if (-not $script:NginxProcess.WaitForExit(10000)) { $script:NginxProcess.Kill($true) }
    }
}

Describe 'Reading images over HTTP' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'Get-VDisk of a URL reports what qemu-img info reports of the file' {
        $info = Get-VDisk -Path "$script:Url/disk.qcow2"
        $expected = qemu-img info --output=json (Join-Path $script:Www 'disk.qcow2') | ConvertFrom-Json
        $info.Format | Should -Be 'qcow2'
        $info.Size | Should -Be $expected.'virtual-size'
        $info.ClusterSize | Should -Be $expected.'cluster-size'
        $info.Path | Should -Be "$script:Url/disk.qcow2"
    }

    It 'Get-VDiskMap of a URL equals qemu-img map of the file' {
        $map = Get-VDiskMap -LiteralPath "$script:Url/top.qcow2"
        $expected = (qemu-img map --output=json (Join-Path $script:Www 'top.qcow2')) -join "`n" | ConvertFrom-Json
        $map.Count | Should -Be $expected.Count
        for ($i = 0; $i -lt $map.Count; $i++) {
            $map[$i].Start | Should -Be $expected[$i].start
            $map[$i].Length | Should -Be $expected[$i].length
            $map[$i].Depth | Should -Be $expected[$i].depth
            $map[$i].Data | Should -Be $expected[$i].data
        }
    }

    It 'Convert-VDisk of a chain on the web server (relative backing file) gives what qemu-img compare finds identical' {
        Convert-VDisk -Path "$script:Url/top.qcow2" -Destination top.raw -Format raw
        qemu-img compare -f qcow2 -F raw (Join-Path $script:Www 'top.qcow2') (Join-Path $script:Root 'top.raw')
        $LASTEXITCODE | Should -Be 0
        $log = Get-Content (Join-Path $script:Nginx 'access.log') | Where-Object { $_ -like 'GET /disk.qcow2 *' -or $_ -like 'GET /top.qcow2 *' }
        $log | Should -Not -BeNullOrEmpty
        $log | ForEach-Object { $_ | Should -Match '"bytes=\d+-\d+" 206$' }
    }

    It 'Convert-VDisk of a VHDX URL to qcow2 gives what qemu-img compare finds identical' {
        Convert-VDisk -Path "$script:Url/disk.vhdx" -Destination fromvhdx.qcow2
        qemu-img compare -f vhdx -F qcow2 (Join-Path $script:Www 'disk.vhdx') (Join-Path $script:Root 'fromvhdx.qcow2')
        $LASTEXITCODE | Should -Be 0
    }

    It 'Compare-VDisk compares a URL with the local copy' {
        Compare-VDisk -ReferencePath "$script:Url/disk.qcow2" -DifferencePath (Join-Path $script:Www 'disk.qcow2') -Quiet | Should -BeTrue
    }

    It 'a missing file is VDisk.PathNotFound naming the URL and the status' {
        Get-VDisk -Path "$script:Url/missing.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.PathNotFound*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        "$($err[0])" | Should -BeLike "*$script:Url/missing.qcow2*HTTP 404*"
    }

    It 'a server that ignores ranges is refused' {
        Get-VDisk -Path "$script:Url/noranges/disk.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        "$($err[0])" | Should -BeLike '*ignores range requests*'
    }

    It 'a convert that cannot read its source leaves nothing behind' {
        Convert-VDisk -Path "$script:Url/missing.qcow2" -Destination missing.vhdx -ErrorAction SilentlyContinue
        Test-Path (Join-Path $script:Root 'missing.vhdx') | Should -BeFalse
    }
}

Describe 'Streaming from a server that ignores range requests' {
    BeforeAll { Push-Location TestDrive: }
    AfterAll { Pop-Location }

    It 'Convert-VDisk of a streamOptimized VMDK URL streams it in one GET and gives what qemu-img compare finds identical' {
        Convert-VDisk -Path "$script:Url/noranges/stream.vmdk" -Destination streamed.qcow2
        qemu-img compare -f vmdk -F qcow2 (Join-Path $script:Www 'noranges/stream.vmdk') (Join-Path $script:Root 'streamed.qcow2')
        $LASTEXITCODE | Should -Be 0
        $log = @(Get-Content (Join-Path $script:Nginx 'access.log') | Where-Object { $_ -like 'GET /noranges/stream.vmdk *' })
        $log.Count | Should -Be 1
        $log[0] | Should -Match ' 200$'
    }

    It 'Get-VDisk of a streamed VMDK URL reports the virtual size from the header' {
        $info = Get-VDisk -Path "$script:Url/noranges/stream.vmdk"
        $expected = qemu-img info --output=json (Join-Path $script:Www 'noranges/stream.vmdk') | ConvertFrom-Json
        $info.Format | Should -Be 'vmdk'
        $info.Size | Should -Be $expected.'virtual-size'
    }

    It 'Convert-VDisk of a qcow2 URL from it is VDisk.NotSupported naming the URL, and leaves nothing' {
        Convert-VDisk -Path "$script:Url/noranges/disk.qcow2" -Destination refused.raw -Format raw -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.NotSupported*'
        "$($err[0])" | Should -BeLike "*$script:Url/noranges/disk.qcow2*ignores range requests*must support them*"
        Test-Path (Join-Path $script:Root 'refused.raw') | Should -BeFalse
    }
}

Describe '-Credential' {
    It 'without a credential the server''s 401 is VDisk.AuthenticationFailed with advice' {
        Get-VDisk -Path "$script:Url/private/disk.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.AuthenticationFailed*'
        $err[0].CategoryInfo.Category | Should -Be 'PermissionDenied'
        "$($err[0])" | Should -BeLike '*HTTP 401*-Credential*'
    }

    It 'a wrong password is refused and never shown' {
        $wrong = [pscredential]::new('bob', (ConvertTo-SecureString 'not-the-Pa55' -AsPlainText -Force))
        Get-VDisk -Path "$script:Url/private/disk.qcow2" -Credential $wrong -ErrorVariable err -ErrorAction SilentlyContinue -Verbose 4>&1 | Out-String | Should -Not -BeLike '*not-the-Pa55*'
        "$($err[0]) $($err[0].Exception)" | Should -BeLike '*refused the credential*'
        "$($err[0]) $($err[0].Exception)" | Should -Not -BeLike '*not-the-Pa55*'
    }

    It 'the right credential reads the image' {
        Convert-VDisk -Path "$script:Url/private/disk.qcow2" -Credential $script:Credential -Destination (Join-Path $script:Root 'private.raw') -Format raw
        qemu-img compare -f qcow2 -F raw (Join-Path $script:Www 'private/disk.qcow2') (Join-Path $script:Root 'private.raw')
        $LASTEXITCODE | Should -Be 0
        (Get-VDisk -Path "$script:Url/private/disk.qcow2" -Credential $script:Credential).Format | Should -Be 'qcow2'
    }
}

Describe '-SkipCertificateCheck' {
    It 'a self-signed certificate is VDisk.CertificateNotTrusted with advice' {
        Get-VDisk -Path "$script:TlsUrl/disk.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.CertificateNotTrusted*'
        "$($err[0])" | Should -BeLike '*-SkipCertificateCheck*'
    }

    It 'with -SkipCertificateCheck the image is read over TLS' {
        Convert-VDisk -Path "$script:TlsUrl/disk.qcow2" -SkipCertificateCheck -Destination (Join-Path $script:Root 'tls.raw') -Format raw
        qemu-img compare -f qcow2 -F raw (Join-Path $script:Www 'disk.qcow2') (Join-Path $script:Root 'tls.raw')
        $LASTEXITCODE | Should -Be 0
        Test-VDisk -Path "$script:TlsUrl/disk.qcow2" -SkipCertificateCheck | Should -BeTrue
    }
}

Describe 'Appliances on a web server' {
    BeforeAll {
        Push-Location TestDrive:
        & qemu-img create -q -f raw app-web.raw 16M
        Write-Bytes app-web.raw 0 (New-TestBytes 1MB 11)
        Write-Bytes app-web.raw 9MB (New-TestBytes 64KB 12)
        & qemu-img create -q -f raw app-data.raw 8M
        Write-Bytes app-data.raw 3MB (New-TestBytes 200KB 13)
        New-Item -ItemType Directory -Path (Join-Path $script:Www 'vm') -Force | Out-Null
        Export-VDiskOva -Path app-web.raw, app-data.raw -Destination (Join-Path $script:Www 'vm/web01.ova') -Name web01 -CpuCount 4 -MemoryMB 8192 | Out-Null
        $script:Ova = "$script:Url/vm/web01.ova"
        Copy-Item (Join-Path $script:Www 'vm/web01.ova') (Join-Path $script:Www 'private/web01.ova')
    }
    AfterAll { Pop-Location }

    It 'Get-VDisk of an OVA URL describes each disk in it, Path the URL' {
        $disks = Get-VDisk $script:Ova
        $disks.Member | Should -Be @('web01-disk1.vmdk', 'web01-disk2.vmdk')
        $disks.Size | Should -Be @(16MB, 8MB)
        $disks | ForEach-Object { $_.Path | Should -Be $script:Ova }
    }

    It 'Get-VDiskOva of an OVA URL gives the VM, with -Credential where the server asks for one' {
        $vm = Get-VDiskOva $script:Ova
        $vm.CpuCount | Should -Be 4
        $vm.MemoryMB | Should -Be 8192
        Get-VDiskOva "$script:Url/private/web01.ova" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.AuthenticationFailed*'
        (Get-VDiskOva "$script:Url/private/web01.ova" -Credential $script:Credential).Disks.File | Should -Be @('web01-disk1.vmdk', 'web01-disk2.vmdk')
    }

    It 'Convert-VDisk converts a disk straight out of an OVA URL by range requests, the same as its source by qemu-img compare' {
        Convert-VDisk $script:Ova -Member web01-disk2.vmdk -Destination app-data.vhdx
        & qemu-img compare -q -f raw -F vhdx app-data.raw app-data.vhdx
        $LASTEXITCODE | Should -Be 0
        Convert-VDisk $script:Ova -Member vmdisk1 -Destination ./ -Format qcow2
        & qemu-img compare -q -f raw -F qcow2 app-web.raw web01-disk1.qcow2
        $LASTEXITCODE | Should -Be 0
        $log = Get-Content (Join-Path $script:Nginx 'access.log') | Where-Object { $_ -like 'GET /vm/web01.ova *' }
        $log | Should -Not -BeNullOrEmpty
        $log | ForEach-Object { $_ | Should -Match '"bytes=\d+-\d+" 206$' }
    }

    It 'Convert-VDisk of an OVA URL takes -Credential for the archive and its disk' {
        Convert-VDisk "$script:Url/private/web01.ova" -Member vmdisk2 -Destination private-data.qcow2 -Credential $script:Credential
        & qemu-img compare -q -f raw -F qcow2 app-data.raw private-data.qcow2
        $LASTEXITCODE | Should -Be 0
    }
}
