#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }

# What an administrator sees when a conversion cannot finish: the error record, and no destination.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Root = (Get-PSDrive TestDrive).Root
    $script:Full = Join-Path $script:Root 'full'
    New-Item -ItemType Directory -Path $script:Full | Out-Null
    # A small tmpfs fills up for real (the suite runs as root, as the xunit disk-full tests do).
    & mount -t tmpfs -o size=8m tmpfs $script:Full
    if ($LASTEXITCODE -ne 0) { throw "mount of a tmpfs at $script:Full failed" }
    $script:Source = Join-Path $script:Root 'src.raw'
    [System.IO.File]::WriteAllBytes($script:Source, (New-TestBytes 16MB 1))
}

AfterAll {
    & umount $script:Full
}

Describe 'Convert-VDisk onto a full volume' {
    It 'reports VDisk.IOError naming <_> and "no space left on device", and leaves no file' -ForEach @('dst.vhdx', 'dst.vmdk', 'dst.qcow2') {
        $destination = Join-Path $script:Full $_
        $err = $null
        Convert-VDisk -Path $script:Source -Destination $destination -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VDisk.IOError*'
        $err[0].Exception.Message | Should -BeLike "$destination*no space left on device*"
        @(Get-ChildItem -Force $script:Full).Count | Should -Be 0
    }
}

Describe 'Convert-VDisk -Force over an existing destination' {
    It 'replaces it with the complete new output and leaves no partial file' {
        Push-Location TestDrive:
        try {
            New-VDisk -Path old.qcow2 -SizeBytes 1MB | Out-Null
            Convert-VDisk -Path $script:Source -Destination old.qcow2 -Force
            (Get-VDisk old.qcow2).Size | Should -Be 16MB
            (Compare-VDisk -ReferencePath $script:Source -DifferencePath old.qcow2).Identical | Should -BeTrue
            @(Get-ChildItem -Force -Filter '.old.qcow2.vdiskps-partial-*').Count | Should -Be 0
        } finally {
            Pop-Location
        }
    }
}
