namespace VDiskPS.Formats.Nbd
{
    /// <summary>Numbers of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md), all sent big-endian.</summary>
    internal static class NbdProtocol
    {
        // "Newstyle negotiation"
        public const ulong InitPasswd = 0x4e42444d41474943; // "NBDMAGIC"
        public const ulong OptionMagic = 0x49484156454F5054; // "IHAVEOPT"
        public const ulong OptionReplyMagic = 0x3e889045565a9;

        // "Request message", "Simple reply message", "Structured reply chunk message"
        public const uint RequestMagic = 0x25609513;
        public const uint SimpleReplyMagic = 0x67446698;
        public const uint StructuredReplyMagic = 0x668e33ef;

        // "Handshake flags" and "Client flags"
        public const ushort FlagFixedNewstyle = 1 << 0;
        public const ushort FlagNoZeroes = 1 << 1;
        public const uint ClientFlagFixedNewstyle = 1 << 0;
        public const uint ClientFlagNoZeroes = 1 << 1;

        // "Transmission flags"
        public const ushort FlagHasFlags = 1 << 0;
        public const ushort FlagReadOnly = 1 << 1;
        public const ushort FlagSendFlush = 1 << 2;
        public const ushort FlagSendFua = 1 << 3;
        public const ushort FlagSendTrim = 1 << 5;
        public const ushort FlagSendWriteZeroes = 1 << 6;
        public const ushort FlagSendDf = 1 << 7;
        public const ushort FlagCanMultiConn = 1 << 8;
        public const ushort FlagSendCache = 1 << 10;
        public const ushort FlagSendFastZero = 1 << 11;

        // "Option types"
        public const uint OptExportName = 1;
        public const uint OptAbort = 2;
        public const uint OptList = 3;
        public const uint OptStartTls = 5;
        public const uint OptInfo = 6;
        public const uint OptGo = 7;
        public const uint OptStructuredReply = 8;
        public const uint OptListMetaContext = 9;
        public const uint OptSetMetaContext = 10;

        // "Option reply types"
        public const uint RepAck = 1;
        public const uint RepServer = 2;
        public const uint RepInfo = 3;
        public const uint RepMetaContext = 4;
        public const uint RepFlagError = 1u << 31;
        public const uint RepErrUnsup = RepFlagError + 1;
        public const uint RepErrPolicy = RepFlagError + 2;
        public const uint RepErrInvalid = RepFlagError + 3;
        public const uint RepErrTlsReqd = RepFlagError + 5;
        public const uint RepErrUnknown = RepFlagError + 6;
        public const uint RepErrTooBig = RepFlagError + 9;

        // NBD_REP_INFO types
        public const ushort InfoExport = 0;
        public const ushort InfoName = 1;
        public const ushort InfoBlockSize = 3;

        // "Command flags"
        public const ushort CmdFlagFua = 1 << 0;
        public const ushort CmdFlagNoHole = 1 << 1;
        public const ushort CmdFlagDf = 1 << 2;
        public const ushort CmdFlagReqOne = 1 << 3;
        public const ushort CmdFlagFastZero = 1 << 4;

        // "Structured reply flags" and "Structured reply types"
        public const ushort ReplyFlagDone = 1 << 0;
        public const ushort ReplyTypeNone = 0;
        public const ushort ReplyTypeOffsetData = 1;
        public const ushort ReplyTypeOffsetHole = 2;
        public const ushort ReplyTypeBlockStatus = 5;
        public const ushort ReplyTypeError = (1 << 15) + 1;

        // "Request types"
        public const ushort CmdRead = 0;
        public const ushort CmdWrite = 1;
        public const ushort CmdDisc = 2;
        public const ushort CmdFlush = 3;
        public const ushort CmdTrim = 4;
        public const ushort CmdCache = 5;
        public const ushort CmdWriteZeroes = 6;
        public const ushort CmdBlockStatus = 7;

        // "Error values"
        public const uint EPerm = 1;
        public const uint EIO = 5;
        public const uint EInval = 22;
        public const uint ENoSpc = 28;
        public const uint EOverflow = 75;
        public const uint ENotSup = 95;

        // "base:allocation metadata context"; qemu's docs/interop/nbd.txt for qemu:dirty-bitmap.
        public const uint StateHole = 1 << 0;
        public const uint StateZero = 1 << 1;
        public const uint StateDirty = 1 << 0;
        public const string BaseAllocation = "base:allocation";
        public const string DirtyBitmapPrefix = "qemu:dirty-bitmap:";

        /// <summary>"Size constraints": the default maximum payload, 32 MiB; larger requests are refused.</summary>
        public const int MaxPayload = 1 << 25;

        /// <summary>Strings (names, queries) are at most 4096 bytes ("Conventions").</summary>
        public const int MaxString = 4096;

        public const int DefaultPort = 10809;
    }
}
