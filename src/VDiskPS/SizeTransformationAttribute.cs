using System;
using System.Management.Automation;
using VDiskPS.Formats;

namespace VDiskPS
{
    /// <summary>
    /// Lets a size parameter take PowerShell numbers (20GB) and qemu-style strings ("20G", "512M").
    /// </summary>
    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
    public sealed class SizeTransformationAttribute : ArgumentTransformationAttribute
    {
        public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
        {
            object value = inputData is PSObject ps ? ps.BaseObject : inputData;
            if (value is string text)
            {
                DiskSize size;
                try
                {
                    size = DiskSize.Parse(text);
                }
                catch (ImageOptionException e)
                {
                    throw new ArgumentTransformationMetadataException(e.Reason, e);
                }

                if (size.IsRelative)
                {
                    throw new ArgumentTransformationMetadataException($"'{text}' is a relative size; give an absolute size here.");
                }

                return (ulong)size.Bytes;
            }

            return value;
        }
    }
}
