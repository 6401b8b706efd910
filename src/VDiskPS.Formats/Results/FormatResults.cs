using System.Collections.Generic;
using System.Linq;

namespace VDiskPS.Formats
{
    /// <summary>One format of the registry, as Get-VDiskFormat shows it.</summary>
    public sealed class VDiskFormatInfo
    {
        public VDiskFormatInfo(FormatDriver driver)
        {
            Name = driver.Format.Name;
            QemuName = driver.QemuName;
            Description = driver.Description;
            Extensions = driver.Extensions.ToList();
            CanWrite = driver is ICreatableDriver;
            Subformats = driver.Subformats.ToList();
            CreateOptions = driver.CreateOptions.Select(o => new VDiskCreateOptionInfo(o)).ToList();
        }

        /// <summary>The -Format value.</summary>
        public string Name { get; }

        /// <summary>qemu-img's name of the format (accepted as -Format too).</summary>
        public string QemuName { get; }

        public string Description { get; }

        /// <summary>File extensions, the first one used for new files.</summary>
        public IReadOnlyList<string> Extensions { get; }

        /// <summary>Every format in the registry is read.</summary>
        public bool CanRead => true;

        /// <summary>Whether this build creates and writes the format (a target of Convert-VDisk and New-VDisk).</summary>
        public bool CanWrite { get; }

        /// <summary>The -Subformat values.</summary>
        public IReadOnlyList<string> Subformats { get; }

        /// <summary>The -Option keys of a new image, with their types.</summary>
        public IReadOnlyList<VDiskCreateOptionInfo> CreateOptions { get; }

        public override string ToString() => Name;
    }

    /// <summary>One create option (-Option key) of a format.</summary>
    public sealed class VDiskCreateOptionInfo
    {
        public VDiskCreateOptionInfo(CreateOption option)
        {
            Name = option.Name;
            Type = option.Kind.ToString();
            Choices = option.Choices.ToList();
            Description = option.Description;
        }

        public string Name { get; }

        /// <summary>Text, Size (qemu size strings: 64k, 1G), Number, Bool (on/off) or Choice.</summary>
        public string Type { get; }

        /// <summary>The accepted values of a Choice option.</summary>
        public IReadOnlyList<string> Choices { get; }

        public string Description { get; }

        public override string ToString() => Name;
    }
}
