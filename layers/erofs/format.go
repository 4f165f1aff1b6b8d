package erofs

import "encoding/binary"

// On-disk layout of a composefs EROFS image: every byte offset and constant
// lives in this file. Field names in comments are the kernel's
// (fs/erofs/erofs_fs.h) and libcomposefs' (lcfs-erofs.h).

// Composefs header (struct lcfs_erofs_header_s), at offset 0.
const (
	cfsMagic        uint32 = 0xD078629A // magic
	cfsHeaderVer    uint32 = 1          // version: header layout version
	cfsFlagHasACL   uint32 = 1 << 0     // flags: LCFS_EROFS_FLAGS_HAS_ACL
	cfsHeaderSize          = 32
	offCfsMagic            = 0  // u32 magic
	offCfsVersion          = 4  // u32 version
	offCfsFlags            = 8  // u32 flags
	offCfsFormatVer        = 12 // u32 composefs_version
)

// Block and slot geometry.
const (
	blkSizeBits = 12
	blkSize     = 1 << blkSizeBits // EROFS_BLKSIZ as used by composefs
	slotSize    = 32               // EROFS_ISLOTBITS = 5
	halfBlock   = blkSize / 2      // inline tails above this go to a block
)

// EROFS superblock (struct erofs_super_block), at offset 1024, 128 bytes.
const (
	sbOffset        = 1024
	sbSize          = 128
	sbMagic  uint32 = 0xE0F5E1E2 // EROFS_SUPER_MAGIC_V1
	// Offsets relative to the superblock start.
	offSbMagic           = 0  // __le32 magic
	offSbChecksum        = 4  // __le32 checksum
	offSbFeatureCompat   = 8  // __le32 feature_compat
	offSbBlkSzBits       = 12 // __u8 blkszbits
	offSbExtSlots        = 13 // __u8 sb_extslots
	offSbRootNid         = 14 // __le16 root_nid
	offSbInos            = 16 // __le64 inos
	offSbBuildTime       = 24 // __le64 build_time
	offSbBuildTimeNsec   = 32 // __le32 build_time_nsec
	offSbBlocks          = 36 // __le32 blocks
	offSbMetaBlkAddr     = 40 // __le32 meta_blkaddr
	offSbXattrBlkAddr    = 44 // __le32 xattr_blkaddr
	offSbFeatureIncompat = 80 // __le32 feature_incompat
)

// Superblock feature bits.
const (
	featureCompatMtime       uint32 = 0x2 // EROFS_FEATURE_COMPAT_MTIME
	featureCompatXattrFilter uint32 = 0x4 // EROFS_FEATURE_COMPAT_XATTR_FILTER
	// featureIncompatChunked is EROFS_FEATURE_INCOMPAT_CHUNKED_FILE; composefs
	// never sets it.
	featureIncompatChunked uint32 = 0x4
)

// inodeStart is where the first inode goes (meta_blkaddr 0).
const inodeStart = sbOffset + sbSize

// Inode layouts.
const (
	compactInodeSize  = 32 // struct erofs_inode_compact
	extendedInodeSize = 64 // struct erofs_inode_extended

	// i_format: bit 0 version, bits 1..3 datalayout.
	inodeLayoutExtended = 1 // EROFS_INODE_LAYOUT_EXTENDED
	layoutFlatPlain     = 0 // EROFS_INODE_FLAT_PLAIN
	layoutFlatInline    = 2 // EROFS_INODE_FLAT_INLINE
	layoutChunkBased    = 4 // EROFS_INODE_CHUNK_BASED

	// Compact inode field offsets.
	offIFormat      = 0  // __le16 i_format
	offIXattrICount = 2  // __le16 i_xattr_icount
	offIMode        = 4  // __le16 i_mode
	offCNlink       = 6  // __le16 i_nlink (compact)
	offCSize        = 8  // __le32 i_size (compact)
	offCU           = 16 // __le32 i_u
	offCIno         = 20 // __le32 i_ino
	offCUID         = 24 // __le16 i_uid
	offCGID         = 26 // __le16 i_gid
	// Extended inode field offsets.
	offESize      = 8  // __le64 i_size
	offEU         = 16 // __le32 i_u
	offEIno       = 20 // __le32 i_ino
	offEUID       = 24 // __le32 i_uid
	offEGID       = 28 // __le32 i_gid
	offEMtime     = 32 // __le64 i_mtime
	offEMtimeNsec = 40 // __le32 i_mtime_nsec
	offENlink     = 44 // __le32 i_nlink
)

// Chunk-based files.
const (
	chunkFormatBlkBitsMask = 0x001F     // EROFS_CHUNK_FORMAT_BLKBITS_MASK
	chunkFormatIndexes     = 0x0020     // EROFS_CHUNK_FORMAT_INDEXES (never set)
	nullAddr               = 0xFFFFFFFF // EROFS_NULL_ADDR
	chunkMapEntrySize      = 4
	maxChunkBits           = 43
	maxChunks              = 1024
)

// Xattrs.
const (
	xattrIBodyHeaderSize = 12 // struct erofs_xattr_ibody_header
	xattrEntryHeaderSize = 4  // struct erofs_xattr_entry
	maxSharedRefs        = 128
	// offsets in erofs_xattr_ibody_header
	offXhNameFilter  = 0 // __le32 h_name_filter
	offXhSharedCount = 4 // __u8 h_shared_count
	// offsets in erofs_xattr_entry
	offXeNameLen   = 0 // __u8 e_name_len
	offXeNameIndex = 1 // __u8 e_name_index
	offXeValueSize = 2 // __le16 e_value_size
	// xattrFilterSeed is EROFS_XATTR_FILTER_SEED.
	xattrFilterSeed = 0x25BBE08F
)

// Xattr name indexes (EROFS_XATTR_INDEX_*).
const (
	xattrIndexNone       = 0
	xattrIndexUser       = 1
	xattrIndexACLAccess  = 2
	xattrIndexACLDefault = 3
	xattrIndexTrusted    = 4
	xattrIndexLustre     = 5
	xattrIndexSecurity   = 6
)

// xattrPrefixes lists the name prefixes in match order.
var xattrPrefixes = [...]struct {
	prefix string
	index  uint8
}{
	{"user.", xattrIndexUser},
	{"system.posix_acl_access", xattrIndexACLAccess},
	{"system.posix_acl_default", xattrIndexACLDefault},
	{"trusted.", xattrIndexTrusted},
	{"security.", xattrIndexSecurity},
}

// prefixForIndex returns the key prefix of an e_name_index.
func prefixForIndex(idx uint8) (string, bool) {
	if idx == xattrIndexNone {
		return "", true
	}
	for _, p := range xattrPrefixes {
		if p.index == idx {
			return p.prefix, true
		}
	}
	return "", false
}

// Directory entries (struct erofs_dirent), 12 bytes.
const (
	direntSize    = 12
	offDeNid      = 0  // __le64 nid
	offDeNameOff  = 8  // __le16 nameoff
	offDeFileType = 10 // __u8 file_type
)

// File types in dirents (EROFS_FT_*).
const (
	ftUnknown = 0
	ftRegFile = 1
	ftDir     = 2
	ftChrdev  = 3
	ftBlkdev  = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
)

// Overlay xattr names used by composefs.
const (
	xattrOverlayPrefix   = "trusted.overlay."
	xattrEscapedPrefix   = "trusted.overlay.overlay."
	xattrMetacopy        = "trusted.overlay.metacopy"
	xattrRedirect        = "trusted.overlay.redirect"
	xattrOpaque          = "trusted.overlay.opaque"
	xattrEscWhiteout     = "trusted.overlay.overlay.whiteout"
	xattrEscWhiteouts    = "trusted.overlay.overlay.whiteouts"
	xattrEscOpaque       = "trusted.overlay.overlay.opaque"
	xattrUserWhiteout    = "user.overlay.whiteout"
	xattrUserWhiteouts   = "user.overlay.whiteouts"
	xattrUserOpaque      = "user.overlay.opaque"
	xattrSelinux         = "security.selinux"
	xattrACLAccess       = "system.posix_acl_access"
	xattrACLDefault      = "system.posix_acl_default"
	metacopyHeaderLen    = 4 // version, len, flags, digest_algo
	metacopyDigestLen    = 32
	metacopyDigestSHA256 = 1
)

var le = binary.LittleEndian
