using System;
using System.Text;
using System.Threading;

namespace VDiskPS.Formats
{
    /// <summary>
    /// The password of encrypted images (LUKS, qcow2 with encrypt.format=luks, legacy qcow AES). A caller
    /// opens a <see cref="Use"/> scope around its engine call; every image opened or created inside it
    /// (on worker threads too) that needs a password takes it from here, so no option class carries it.
    /// The bytes are never formatted into a message, log or exception, and are cleared when the scope ends.
    /// </summary>
    public sealed class ImageSecrets
    {
        private static readonly AsyncLocal<ImageSecrets> s_current = new AsyncLocal<ImageSecrets>();

        private readonly byte[] _password;

        /// <summary>Holds <paramref name="password"/> (UTF-8, as cryptsetup and qemu take a passphrase); the caller may clear its copy.</summary>
        public ImageSecrets(byte[] password)
        {
            _password = (byte[])(password ?? throw new ArgumentNullException(nameof(password))).Clone();
        }

        public static ImageSecrets FromString(string password) => new ImageSecrets(Encoding.UTF8.GetBytes(password ?? throw new ArgumentNullException(nameof(password))));

        /// <summary>Whether the innermost scope holds a password.</summary>
        public static bool HasPassword => s_current.Value != null;

        /// <summary>
        /// A copy of the password for the image at <paramref name="path"/> (clear it after use); without one,
        /// <see cref="ImagePasswordException"/> with <see cref="ImagePasswordException.Missing"/> set.
        /// </summary>
        public static byte[] Password(string path)
        {
            ImageSecrets current = s_current.Value ?? throw new ImagePasswordException(path, missing: true);
            return (byte[])current._password.Clone();
        }

        /// <summary>Makes <paramref name="secrets"/> (null: none) the password of images opened until the returned scope is disposed; the bytes are cleared then.</summary>
        public static IDisposable Use(ImageSecrets secrets)
        {
            ImageSecrets previous = s_current.Value;
            s_current.Value = secrets;
            return new Scope(previous, secrets);
        }

        public override string ToString() => "(password)";

        private sealed class Scope : IDisposable
        {
            private readonly ImageSecrets _previous;
            private readonly ImageSecrets _mine;

            public Scope(ImageSecrets previous, ImageSecrets mine)
            {
                _previous = previous;
                _mine = mine;
            }

            public void Dispose()
            {
                s_current.Value = _previous;
                if (_mine != null && !ReferenceEquals(_mine, _previous))
                {
                    Array.Clear(_mine._password, 0, _mine._password.Length);
                }
            }
        }
    }
}
