// Snappy, LZ4 and zstd for kafkajs, which ships gzip only, from npm packages that need no native
// build and no download at install time:
//
// - snappy: kafkajs-snappy (snappyjs, pure JS). It writes raw snappy, as librdkafka does, and reads
//   raw or xerial-framed snappy (what the Java client writes).
// - lz4: Kafka uses the LZ4 *frame* format. lz4js (pure JS) has the block compressor and decoder,
//   but its own frame writer sets no block-independence flag (the Java client refuses such frames),
//   lets the last match start in the last 12 bytes of a block (the LZ4 block format forbids that),
//   and its frame reader misreads block checksums. So the frame is written and read here, around
//   lz4js's block functions: 64 KiB independent blocks without checksums, as the Java client
//   writes them.
// - zstd: @bokuweb/zstd-wasm (zstd compiled to wasm, inside the npm tarball).
//
// register(CompressionTypes, CompressionCodecs) installs them into kafkajs.
'use strict'

const snappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')
const xxh32 = require('lz4js/xxh32.js')
const zstd = require('@bokuweb/zstd-wasm')

// --- LZ4 frames ----------------------------------------------------------------------------------

const LZ4_MAGIC = 0x184d2204
const LZ4_BLOCK_BYTES = 64 * 1024
const LZ4_BLOCK_SIZE_IDS = { 4: 64 * 1024, 5: 256 * 1024, 6: 1024 * 1024, 7: 4 * 1024 * 1024 }
const FLG_VERSION = 0x40
const FLG_BLOCK_INDEPENDENT = 0x20
const FLG_BLOCK_CHECKSUM = 0x10
const FLG_CONTENT_SIZE = 0x08
const FLG_CONTENT_CHECKSUM = 0x04
const FLG_DICT_ID = 0x01
const UNCOMPRESSED_BIT = 0x80000000
// The LZ4 block format: the last match starts at least 12 bytes before the end of the block, and
// the last 5 bytes are literals. lz4js keeps the second rule but not the first.
const MF_LIMIT = 12

// Where the last sequence of an LZ4 block starts, and its literal count and first literal.
function lastSequence (block, length) {
  let i = 0
  for (;;) {
    const start = i
    const token = block[i++]
    let literals = token >> 4
    if (literals === 15) {
      let b
      do { b = block[i++]; literals += b } while (b === 255)
    }
    const literalsAt = i
    i += literals
    if (i >= length) return { start, literals, literalsAt }
    i += 2 // match offset
    if ((token & 15) === 15) {
      let b
      do { b = block[i++] } while (b === 255)
    }
  }
}

function encodeLiteralRun (out, count) {
  out.push(Math.min(count, 15) << 4)
  if (count >= 15) {
    let n = count - 15
    for (; n >= 255; n -= 255) out.push(255)
    out.push(n)
  }
}

// One independent LZ4 block of src[start, start + length), or null when storing it raw is better.
// The last MF_LIMIT bytes are left out of the compressor and appended to its final literal run,
// so no match can start in them.
function compressBlock (src, start, length) {
  const head = length - MF_LIMIT
  if (head < 16) return null
  const scratch = new Uint8Array(lz4.compressBound(head) + 16)
  // compressBlock returns 0 when it found no match at all (and gives up only at offset 0).
  const size = lz4.compressBlock(src, scratch, start, head, new Uint32Array(1 << 16))
  if (size === 0) return null
  const last = lastSequence(scratch, size)
  const tail = []
  encodeLiteralRun(tail, last.literals + MF_LIMIT)
  const out = Buffer.alloc(last.start + tail.length + last.literals + MF_LIMIT)
  out.set(scratch.subarray(0, last.start), 0)
  out.set(tail, last.start)
  out.set(scratch.subarray(last.literalsAt, last.literalsAt + last.literals), last.start + tail.length)
  out.set(src.subarray(start + head, start + length), last.start + tail.length + last.literals)
  return out.length < length ? out : null
}

function lz4FrameCompress (src) {
  const parts = []
  const header = Buffer.alloc(7)
  header.writeUInt32LE(LZ4_MAGIC, 0)
  header[4] = FLG_VERSION | FLG_BLOCK_INDEPENDENT
  header[5] = 4 << 4 // 64 KiB blocks
  header[6] = (xxh32.hash(0, header, 4, 2) >> 8) & 0xff
  parts.push(header)
  for (let start = 0; start < src.length; start += LZ4_BLOCK_BYTES) {
    const length = Math.min(LZ4_BLOCK_BYTES, src.length - start)
    const compressed = compressBlock(src, start, length)
    const size = Buffer.alloc(4)
    if (compressed === null) {
      size.writeUInt32LE((UNCOMPRESSED_BIT | length) >>> 0, 0)
      parts.push(size, src.subarray(start, start + length))
    } else {
      size.writeUInt32LE(compressed.length, 0)
      parts.push(size, compressed)
    }
  }
  parts.push(Buffer.alloc(4)) // end mark
  return Buffer.concat(parts)
}

// Any LZ4 frame: linked or independent blocks, with or without checksums and content size, and
// several frames (or skippable frames) one after the other. Checksums are skipped, not verified
// (the record batch has its own CRC).
function lz4FrameDecompress (src) {
  const outputs = []
  let i = 0
  while (i < src.length) {
    const magic = src.readUInt32LE(i)
    if ((magic & 0xfffffff0) === 0x184d2a50) { // skippable frame
      i += 8 + src.readUInt32LE(i + 4)
      continue
    }
    if (magic !== LZ4_MAGIC) throw new Error(`not an LZ4 frame (magic 0x${magic.toString(16)})`)
    const flg = src[i + 4]
    const blockMax = LZ4_BLOCK_SIZE_IDS[(src[i + 5] >> 4) & 7]
    if ((flg & 0xc0) !== FLG_VERSION || blockMax === undefined) throw new Error('unsupported LZ4 frame descriptor')
    i += 6 + (flg & FLG_CONTENT_SIZE ? 8 : 0) + (flg & FLG_DICT_ID ? 4 : 0) + 1
    const blockChecksum = flg & FLG_BLOCK_CHECKSUM ? 4 : 0
    // A first pass finds the blocks and bounds the output; linked blocks refer back into it.
    const blocks = []
    let bound = 0
    for (;;) {
      const word = src.readUInt32LE(i)
      i += 4
      if (word === 0) break
      const raw = (word & UNCOMPRESSED_BIT) !== 0
      const size = word & 0x7fffffff
      blocks.push({ at: i, size, raw })
      bound += raw ? size : blockMax
      i += size + blockChecksum
    }
    if (flg & FLG_CONTENT_CHECKSUM) i += 4
    const out = new Uint8Array(bound)
    let written = 0
    for (const block of blocks) {
      if (block.raw) {
        out.set(src.subarray(block.at, block.at + block.size), written)
        written += block.size
      } else {
        written = lz4.decompressBlock(src, out, block.at, block.size, written)
      }
    }
    outputs.push(Buffer.from(out.buffer, out.byteOffset, written))
  }
  return Buffer.concat(outputs)
}

const lz4Codec = {
  async compress (encoder) {
    return lz4FrameCompress(encoder.buffer)
  },
  async decompress (buffer) {
    return lz4FrameDecompress(buffer)
  }
}

// --- zstd ------------------------------------------------------------------------------------------

let zstdReady = null
const zstdInit = () => zstdReady || (zstdReady = zstd.init())
const ZSTD_LEVEL = 3
const ZSTD_HEAP_MAX = 256 * 1024 * 1024

const zstdCodec = {
  async compress (encoder) {
    await zstdInit()
    return Buffer.from(zstd.compress(encoder.buffer, ZSTD_LEVEL))
  },
  // A frame that states its size decompresses into that much; a streamed one (the Java client and
  // librdkafka write those) into a buffer that grows until the frame fits.
  async decompress (buffer) {
    await zstdInit()
    for (let heap = Math.max(1024 * 1024, 16 * buffer.length); ; heap *= 4) {
      try {
        return Buffer.from(zstd.decompress(buffer, { defaultHeapSize: heap }))
      } catch (e) {
        if (heap >= ZSTD_HEAP_MAX) throw e
      }
    }
  }
}

function register (CompressionTypes, CompressionCodecs) {
  CompressionCodecs[CompressionTypes.Snappy] = snappyCodec
  CompressionCodecs[CompressionTypes.LZ4] = () => lz4Codec
  CompressionCodecs[CompressionTypes.ZSTD] = () => zstdCodec
}

module.exports = { register, lz4FrameCompress, lz4FrameDecompress, lz4Codec, zstdCodec, snappyCodec }
