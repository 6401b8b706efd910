@{
    # VDiskPS.psm1 loads the build for the running PowerShell: the .NET Framework 4.7.2 one for
    # Windows PowerShell 5.1, the .NET 8 one for PowerShell 7, precompiled for .NET 10 where it can.
    RootModule             = 'VDiskPS.psm1'
    ModuleVersion          = '0.1.0'
    GUID                   = '71e19329-b0d6-4ed3-ba38-a21f2a9560ad'
    Author                 = 'VDiskPS contributors'
    CompanyName            = 'VDiskPS'
    Copyright              = '(c) VDiskPS contributors. All rights reserved.'
    Description            = 'Create, inspect, convert and maintain virtual disk images (raw, qcow2, VMDK, VHD, VHDX, VDI) from PowerShell: what qemu-img does, with the feel of the Hyper-V VHD cmdlets.'
    PowerShellVersion      = '5.1'
    CompatiblePSEditions   = @('Desktop', 'Core')
    DotNetFrameworkVersion = '4.7.2'
    FormatsToProcess       = @('VDiskPS.Format.ps1xml')
    TypesToProcess         = @('VDiskPS.Types.ps1xml')
    CmdletsToExport        = @(
        'Add-VDiskBitmap'
        'Clear-VDiskBitmap'
        'Compare-VDisk'
        'Convert-VDisk'
        'Copy-VDiskData'
        'Disable-VDiskBitmap'
        'Dismount-VDisk'
        'Export-VDiskOva'
        'Enable-VDiskBitmap'
        'Get-VDisk'
        'Get-VDiskBitmap'
        'Get-VDiskChain'
        'Get-VDiskFormat'
        'Get-VDiskMap'
        'Get-VDiskOva'
        'Get-VDiskServer'
        'Get-VDiskSnapshot'
        'Invoke-VDiskCommit'
        'Measure-VDisk'
        'Merge-VDisk'
        'Merge-VDiskBitmap'
        'Mount-VDisk'
        'New-VDisk'
        'New-VDiskSnapshot'
        'Optimize-VDisk'
        'Remove-VDiskBitmap'
        'Remove-VDiskSnapshot'
        'Repair-VDisk'
        'Resize-VDisk'
        'Restore-VDiskSnapshot'
        'Set-VDisk'
        'Start-VDiskServer'
        'Stop-VDiskServer'
        'Sync-VDisk'
        'Test-VDisk'
    )
    FunctionsToExport      = @()
    AliasesToExport        = @()
    VariablesToExport      = @()
    PrivateData            = @{
        PSData = @{
            Tags         = @('VirtualDisk', 'qcow2', 'VMDK', 'VHD', 'VHDX', 'VDI', 'qemu-img', 'HyperV', 'VMware', 'Migration', 'Windows', 'Linux', 'PSEdition_Desktop', 'PSEdition_Core')
            ProjectUri   = 'https://github.com/vdiskps/VDiskPS'
            LicenseUri   = 'https://github.com/vdiskps/VDiskPS/blob/main/LICENSE'
            ReleaseNotes = 'See CHANGELOG.md.'
        }
    }
}
