# A Hyper-V maintenance script written with the Hyper-V module's cmdlet names and parameters.
# HyperVParity.Tests.ps1 runs it with the noun replaced (VHD -> VDisk); nothing else is changed.
# $Folder holds vm.vhdx, a VM's GPT-partitioned system disk.
param([string] $Folder)

Set-Location $Folder

# Create dynamic, fixed and differencing disks (a checkpoint of the VM's disk).
New-VHD -Path data.vhdx -SizeBytes 64MB -Dynamic | Out-Null
New-VHD -Path scratch.vhdx -SizeBytes 16MB -Fixed | Out-Null
New-VHD -Path vm_checkpoint.avhdx -ParentPath vm.vhdx -Differencing | Out-Null

# Read the properties Get-VHD shows.
Get-VHD -Path vm.vhdx, data.vhdx, scratch.vhdx, vm_checkpoint.avhdx |
    Select-Object Path, VhdFormat, VhdType, Size, FileSize, MinimumSize, BlockSize, LogicalSectorSize,
        PhysicalSectorSize, ParentPath, DiskIdentifier, FragmentationPercentage, Alignment |
    Export-Csv -Path report.csv -NoTypeInformation

# Convert: a VHD copy of the fixed disk (it stays fixed), and a dynamic copy of the VM's disk.
Convert-VHD -Path scratch.vhdx -DestinationPath scratch.vhd
Convert-VHD -Path vm.vhdx -DestinationPath vm_small.vhdx -VHDType Dynamic

# Shrink the copy to its partitions; grow the data disk.
Resize-VHD -Path vm_small.vhdx -ToMinimumSize
Resize-VHD -Path data.vhdx -SizeBytes 128MB

# Optimize in every mode.
foreach ($mode in 'Quick', 'Full', 'Pretrimmed', 'Prezeroed', 'Retrim') {
    Optimize-VHD -Path vm_small.vhdx -Mode $mode
}

# Merge the checkpoint back into the VM's disk.
Merge-VHD -Path vm_checkpoint.avhdx -DestinationPath vm.vhdx -Force

# Re-link a differencing disk to a copy of its parent.
New-VHD -Path data_child.avhdx -ParentPath data.vhdx -Differencing | Out-Null
Copy-Item data.vhdx data_copy.vhdx
Set-VHD -Path data_child.avhdx -ParentPath data_copy.vhdx -IgnoreIdMismatch

# Test every disk and chain, then optimize every dynamic disk in the folder.
Get-ChildItem -Path *.vhdx, *.avhdx | ForEach-Object {
    [pscustomobject]@{ Path = $_.Name; Valid = Test-VHD -Path $_.FullName }
} | Export-Csv -Path tests.csv -NoTypeInformation
Get-ChildItem -Path data.vhdx, vm_small.vhdx | Optimize-VHD -Passthru | ForEach-Object { $_.Path } | Set-Content optimized.txt
