#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# Ctrl+C (PowerShell.Stop) in the middle of long work: when Stop returns, the engine has stopped and
# cleaned up, so a host that exits right after leaves no partial output and no half-done commit.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root
    $script:ModuleManifest = (Resolve-Path $script:ModulePath).Path

    function New-DataFile([string] $Path, [int] $MiB, [int] $Seed) {
        $rng = [System.Random]::new($Seed)
        $chunk = [byte[]]::new(1MB)
        $fs = [System.IO.File]::Create($Path)
        try {
            for ($i = 0; $i -lt $MiB; $i++) { $rng.NextBytes($chunk); $fs.Write($chunk, 0, $chunk.Length) }
        } finally { $fs.Dispose() }
    }

    # Runs a script in its own runspace, waits until it reported progress, stops it (as Ctrl+C does)
    # and returns once Stop has returned.
    function Stop-AfterProgress([string] $Script) {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$script:ModuleManifest'; Set-Location '$script:Root'; $Script")
            $async = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(60)
            while ($ps.Streams.Progress.Count -lt 2 -and -not $async.IsCompleted -and [DateTime]::UtcNow -lt $deadline) {
                Start-Sleep -Milliseconds 10
            }
            $async.IsCompleted | Should -BeFalse -Because 'the work must still run when it is stopped'
            $ps.Stop()
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
        } finally { $ps.Dispose() }
    }

    function Get-Hash([string] $Path) { (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash }
}

Describe 'Stopping a conversion' {
    BeforeAll {
        $script:Source = Join-Path $script:Root 'big.raw'
        New-DataFile $script:Source 128 1
        $script:SourceHash = Get-Hash $script:Source
    }

    It 'returns only when the partial output is gone and nothing writes any more' {
        $before = @(Get-ChildItem -LiteralPath $script:Root -Name)
        # Compressing 128 MiB of random data with one worker keeps the conversion busy for seconds, and
        # a stop reaches it while chunks are in flight: their progress comes after the stop was asked.
        foreach ($trial in 1..3) {
            Stop-AfterProgress "Convert-VDisk -Path big.raw -Destination out.qcow2 -Compress -ThrottleLimit 1"
            # Checked at once: without waiting for the engine, the output is still there, open and growing.
            @(Get-ChildItem -LiteralPath $script:Root -Name) | Should -Be $before -Because "stop $trial returned"
        }

        Start-Sleep -Milliseconds 500
        @(Get-ChildItem -LiteralPath $script:Root -Name) | Should -Be $before
        Get-Hash $script:Source | Should -Be $script:SourceHash
    }
}

Describe 'Stopping a commit' {
    It 'returns with a consistent base that no longer changes and a chain that reads as before' {
        $dir = Join-Path $script:Root 'commit'
        $null = New-Item -ItemType Directory $dir
        $raw = Join-Path $dir 'data.raw'
        New-DataFile $raw 64 2
        & qemu-img convert -q -f raw -O qcow2 $raw (Join-Path $dir 'base.qcow2')
        & qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 (Join-Path $dir 'top.qcow2')
        & qemu-io -f qcow2 -c 'write -P 0x33 0 64M' (Join-Path $dir 'top.qcow2') | Out-Null
        Remove-Item $raw
        $copy = Join-Path $dir 'before'
        $null = New-Item -ItemType Directory $copy
        Copy-Item (Join-Path $dir '*.qcow2') $copy

        # 16 MB/s over 64 MiB: the commit runs for seconds.
        Stop-AfterProgress "Invoke-VDiskCommit -Path commit/top.qcow2 -RateLimit 16MB -Confirm:`$false"

        $base = Join-Path $dir 'base.qcow2'
        $hash = Get-Hash $base
        Start-Sleep -Milliseconds 500
        Get-Hash $base | Should -Be $hash -Because 'nothing may write the base after Stop returned'
        & qemu-img check -f qcow2 $base | Out-Null
        $LASTEXITCODE | Should -Be 0
        Push-Location $dir
        try {
            & qemu-img compare -f qcow2 -F qcow2 top.qcow2 before/top.qcow2 | Out-Null
            $LASTEXITCODE | Should -Be 0
        } finally { Pop-Location }
    }
}
