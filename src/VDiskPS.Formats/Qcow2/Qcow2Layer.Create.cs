using System;
using System.Collections.Generic;
using System.IO;
using VDiskPS;

namespace VDiskPS.Formats.Qcow2
{
    /// <summary>Creating an image: header at cluster 0, L1 table after it, refcount structure after that, then preallocation.</summary>
    internal sealed partial class Qcow2Layer
    {
        internal static Qcow2Layer Create(string path, Qcow2CreateOptions options, CreateRequest request)
        {
            string fullPath = System.IO.Path.GetFullPath(path);
            ISectorCipher cipher = null;
            byte[] cryptoArea = options.Encryption == null ? null : NewLuksHeader(fullPath, options, out cipher);
            HostFile file;
            try
            {
                file = request.CreateFile(fullPath);
            }
            catch
            {
                cipher?.Dispose();
                throw;
            }

            HostFile dataFile = null;
            string createdDataFile = null;
            try
            {
                int clusterBits = Qcow2CreateOptions.ClusterBitsOf(options.ClusterSize);
                var header = new Qcow2Header
                {
                    Version = options.Version,
                    ClusterBits = clusterBits,
                    Size = options.Size,
                    RefcountOrder = options.RefcountOrder,
                    HeaderLength = options.Version >= 3 ? Qcow2Header.V3HeaderLength : Qcow2Header.V2HeaderLength,
                    BackingFile = options.BackingFile,
                    BackingFormat = options.BackingFile != null ? options.BackingFormat : null,
                    DataFile = options.DataFile,
                    CompressionType = (byte)(options.Compression == CompressionType.Zstd ? 1 : 0),
                };
                if (options.Compression == CompressionType.Zstd)
                {
                    header.IncompatibleFeatures |= Qcow2Header.IncompatibleCompressionType;
                }

                if (options.ExtendedL2)
                {
                    header.IncompatibleFeatures |= Qcow2Header.IncompatibleExtendedL2;
                }

                if (options.DataFile != null)
                {
                    header.IncompatibleFeatures |= Qcow2Header.IncompatibleDataFile;
                    if (options.DataFileRaw)
                    {
                        header.AutoclearFeatures |= Qcow2Header.AutoclearDataFileRaw;
                    }
                }

                if (options.LazyRefcounts)
                {
                    header.CompatibleFeatures |= Qcow2Header.CompatibleLazyRefcounts;
                }

                header.L1Size = (int)Qcow2Header.L1EntriesFor(options.Size, clusterBits, header.L2Entries);
                long l1Clusters = ((long)header.L1Size * 8 + options.ClusterSize - 1) >> clusterBits;
                header.L1TableOffset = header.L1Size > 0 ? options.ClusterSize : 0;

                // The LUKS header takes whole clusters after the L1 table, as qemu's qcow2_crypto_hdr_init_func allocates them.
                long cryptoClusters = cryptoArea == null ? 0 : (cryptoArea.Length + options.ClusterSize - 1) >> clusterBits;
                if (cryptoArea != null)
                {
                    header.CryptMethod = Qcow2Header.CryptLuks;
                    header.CryptoHeaderOffset = (1 + l1Clusters) << clusterBits;
                    header.CryptoHeaderLength = cryptoArea.Length;
                }

                // The header must fit its cluster before anything else is written.
                header.RefcountTableOffset = options.ClusterSize;
                header.RefcountTableClusters = 1;
                header.Serialize(fullPath);

                var counts = new ClusterCounts();
                counts.AddRange(0, 1 + l1Clusters + cryptoClusters);
                var built = Qcow2RefcountBuilder.Build(file, counts, clusterBits, options.RefcountOrder, 1 + l1Clusters + cryptoClusters);
                if (cryptoArea != null)
                {
                    file.WriteAt(header.CryptoHeaderOffset, cryptoArea);
                }

                header.RefcountTableOffset = built.TableOffset;
                header.RefcountTableClusters = built.TableClusters;
                if (header.L1Size > 0)
                {
                    file.WriteAt(header.L1TableOffset, new byte[(long)header.L1Size * 8]);
                }

                file.WriteAt(0, header.Serialize(fullPath));

                if (options.DataFile != null)
                {
                    string dataPath = BackingReference.ResolveAgainst(System.IO.Path.GetDirectoryName(fullPath) ?? string.Empty, options.DataFile);
                    if (File.Exists(dataPath))
                    {
                        dataFile = HostFile.Open(dataPath, HostAccess.ReadWrite);
                    }
                    else
                    {
                        dataFile = request.CreateFile(dataPath);
                        createdDataFile = dataFile.Path;
                    }

                    if (dataFile.Length < options.Size)
                    {
                        dataFile.SetLength(options.Size);
                    }
                }

                var layer = new Qcow2Layer(file, dataFile, header, new long[header.L1Size], new List<Qcow2Snapshot>()) { _dataFileCreatedHere = createdDataFile != null, _cipher = cipher };
                cipher = null;
                layer._refcounts = new Qcow2Refcounts(file, clusterBits, options.RefcountOrder, built.TableOffset, built.Table, layer.OnRefcountTableMoved);
                if (options.Preallocation != Preallocation.Off)
                {
                    layer.Preallocate(options.Preallocation);
                }

                return layer;
            }
            catch
            {
                cipher?.Dispose();
                dataFile?.Dispose();
                file.Dispose();
                StagedOutput.TryDelete(file.Path);
                if (createdDataFile != null)
                {
                    StagedOutput.TryDelete(createdDataFile);
                }

                throw;
            }
        }

        /// <summary>A new LUKS header area for the ambient password (asked before any file is made), and its cipher.</summary>
        private static byte[] NewLuksHeader(string path, Qcow2CreateOptions options, out ISectorCipher cipher)
        {
            byte[] password = ImageSecrets.Password(path);
            try
            {
                return LuksEncryption(path).CreateHeader(path, password, options.IterationMilliseconds, out cipher);
            }
            finally
            {
                Array.Clear(password, 0, password.Length);
            }
        }

        /// <summary>Maps every cluster from <paramref name="fromCluster"/> on (metadata preallocation), then reserves (falloc) or writes (full) its data.</summary>
        private void Preallocate(Preallocation mode, long fromCluster = 0)
        {
            // A mapped cluster of an encrypted image must hold encrypted zeros, which no preallocation writes.
            RefuseWithEncryption("preallocation");
            lock (_gate)
            {
                long clusters = (_size + ClusterMask) >> ClusterBits;
                int step = ExtendedL2 ? 2 : 1;
                var runs = new List<KeyValuePair<long, long>>();
                for (int l1Index = (int)(fromCluster / _header.L2Entries); l1Index < _l1.Length; l1Index++)
                {
                    long tableFirst = (long)l1Index * _header.L2Entries;
                    long first = Math.Max(fromCluster, tableFirst);
                    int firstIndex = (int)(first - tableFirst);
                    int end = (int)Math.Min(_header.L2Entries, clusters - tableFirst);
                    if (end <= firstIndex)
                    {
                        break;
                    }

                    L2Update update = BeginL2Update(l1Index, allocate: true);
                    int missing = 0;
                    for (int i = firstIndex; i < end; i++)
                    {
                        if (!IsAllocated(update.Table[i * step]))
                        {
                            missing++;
                        }
                    }

                    if (missing == 0)
                    {
                        CommitL2Update(update);
                        continue;
                    }

                    long host = _dataFile != null ? first << ClusterBits : Refcounts.Allocate(missing, atEnd: true);
                    long next = host;
                    for (int i = firstIndex; i < end; i++)
                    {
                        if (IsAllocated(update.Table[i * step]))
                        {
                            continue;
                        }

                        long clusterHost = _dataFile != null ? (tableFirst + i) << ClusterBits : next;
                        next += _header.ClusterSize;
                        update.Table[i * step] = (ulong)clusterHost | CopiedFlag;
                        update.Touch(i * step);
                        if (ExtendedL2)
                        {
                            // Over a backing file the subclusters stay unallocated and keep reading from it (QEMU's rule for this combination).
                            update.Table[i * 2 + 1] = _backing != null ? 0 : AllSubclustersAllocated;
                            update.Touch(i * 2 + 1);
                        }
                    }

                    long runLength = _dataFile != null ? (long)(end - firstIndex) << ClusterBits : (long)missing << ClusterBits;
                    runs.Add(new KeyValuePair<long, long>(host, runLength));

                    // The clusters must lie inside the file before the L2 table points there.
                    HostFile target = _dataFile ?? _file;
                    if (target.Length < host + runLength)
                    {
                        target.SetLength(host + runLength);
                    }

                    CommitL2Update(update);
                }

                HostFile dataTarget = _dataFile ?? _file;
                foreach (var run in runs)
                {
                    dataTarget.Preallocate(run.Key, run.Value, mode);
                }

                Refcounts.Flush();
            }
        }
    }
}
