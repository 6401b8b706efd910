#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# A running VM's disk (here held by qemu-io, as QEMU holds it) is untouchable, and QEMU cannot take
# an image VDiskPS is writing: both sides honour QEMU's lock bytes (Linux).

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root

    # Starts qemu-io on an image, read-write like a VM, and returns once its locks are in place
    # (qemu-img info, which refuses an image a writer holds, then fails).
    function Start-QemuHolder([string] $Path) {
        $psi = [System.Diagnostics.ProcessStartInfo]::new('qemu-io')
        foreach ($a in '-f', 'qcow2', $Path) { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardInput = $true
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $psi.UseShellExecute = $false
        $process = [System.Diagnostics.Process]::Start($psi)
        $deadline = [DateTime]::UtcNow.AddSeconds(20)
        while ([DateTime]::UtcNow -lt $deadline) {
            if ($process.HasExited) { throw "qemu-io exited: $($process.StandardError.ReadToEnd())" }
            qemu-img info $Path *> $null
            if ($LASTEXITCODE -ne 0) { return $process }
            Start-Sleep -Milliseconds 50
        }
        $process.Kill()
        throw 'qemu-io did not lock the image in time'
    }

    function Stop-QemuHolder {
        if ($script:Vm) {
            if (-not $script:Vm.HasExited) { $script:Vm.Kill() }
            $script:Vm.WaitForExit()
            $script:Vm.Dispose()
            $script:Vm = $null
        }
    }
}

Describe 'An image a VM holds' {
    BeforeEach {
        Push-Location TestDrive:
        qemu-img create -q -f qcow2 vm.qcow2 16M
        $script:Before = (Get-FileHash vm.qcow2).Hash
        $script:Vm = Start-QemuHolder (Join-Path $script:Root 'vm.qcow2')
    }
    AfterEach {
        Stop-QemuHolder
        Pop-Location
    }

    It 'is not resized' {
        Resize-VDisk vm.qcow2 -Size +1M -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.ImageInUse*'
        $err[0].Exception.Message | Should -BeLike "*vm.qcow2*process $($script:Vm.Id) (qemu-io)*"
        Stop-QemuHolder
        (Get-FileHash vm.qcow2).Hash | Should -Be $script:Before
    }

    It 'gets no snapshot' {
        New-VDiskSnapshot vm.qcow2 -Name live -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.ImageInUse*'
        Stop-QemuHolder
        (Get-FileHash vm.qcow2).Hash | Should -Be $script:Before
        qemu-img snapshot -l vm.qcow2 | Should -Not -Match 'live'
    }

    It 'is read only with -Force, as qemu-img info needs -U' {
        Get-VDisk vm.qcow2 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.ImageInUse*'
        $err[0].ToString() | Should -BeLike '*Use -Force to read it anyway*'
        (Get-VDisk vm.qcow2 -Force).Size | Should -Be 16MB
    }
}

Describe 'An image VDiskPS writes' {
    BeforeAll {
        Push-Location TestDrive:
        qemu-img create -q -f qcow2 base.qcow2 16M
        $script:Path = Join-Path $script:Root 'base.qcow2'
        # What Invoke-VDiskCommit holds while it writes into the base: the layer open writable.
        $options = [VDiskPS.Formats.OpenOptions]::new()
        $options.Writable = $true
        $script:Layer = [VDiskPS.Formats.FormatRegistry]::Default.Open($script:Path, $null, $options)
    }
    AfterAll {
        if ($script:Layer) { $script:Layer.Dispose() }
        Pop-Location
    }

    It 'is not resized by qemu-img' {
        $out = qemu-img resize $script:Path +1M 2>&1
        $LASTEXITCODE | Should -Not -Be 0
        "$out" | Should -BeLike '*Failed to get "write" lock*'
    }

    It 'is read by qemu-img info only with -U' {
        qemu-img info $script:Path *> $null
        $LASTEXITCODE | Should -Not -Be 0
        qemu-img info -U $script:Path | Out-Null
        $LASTEXITCODE | Should -Be 0
    }
}
