namespace VDiskPS { }
