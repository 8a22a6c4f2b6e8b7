#!/usr/bin/python3
"""Marks one version requirement of an ELF64 shared library weak (VER_FLG_WEAK), in place, on a copy.

Why: TorchSharp-cpu 0.107.0's libLibTorchSharp.so was linked against GCC 13's libstdc++ and requires the
version GLIBCXX_3.4.32, which Debian 12's libstdc++ (GCC 12) does not define; the only symbol it uses from that
version is std::ios_base_library_init(). glibc's loader refuses a library whose required version is missing,
unless the requirement is flagged weak (then it only warns under LD_DEBUG). PeerBench's setup marks it weak in
the build output's copy and preloads a tiny library that defines the symbol (ios_base_library_init.cpp).

Written from the ELF specification and the GNU symbol versioning extension (System V gABI, LSB "Symbol
Versioning"): section SHT_GNU_verneed (0x6ffffffe) holds Elf64_Verneed entries {vn_version u16, vn_cnt u16,
vn_file u32, vn_aux u32, vn_next u32}, each followed (at vn_aux) by vn_cnt Elf64_Vernaux entries {vna_hash u32,
vna_flags u16, vna_other u16, vna_name u32, vna_next u32}; names are offsets into the section sh_link names.

usage: patch_verneed_weak.py LIBRARY VERSION     (e.g. libLibTorchSharp.so GLIBCXX_3.4.32)
Exit 0 when the requirement is weak afterwards (already, or now), 1 when the library does not require VERSION.
"""
import struct
import sys

SHT_GNU_VERNEED = 0x6FFFFFFE
VER_FLG_WEAK = 0x2


def main(path, version):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise SystemExit(f"{path}: not a little-endian ELF64 file")
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)

        def section(i):
            # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info
            return struct.unpack_from("<IIQQQQII", data, shoff + i * shentsize)

        def name_at(strtab_offset, offset):
            start = strtab_offset + offset
            return bytes(data[start:data.index(0, start)]).decode()

        found = False
        for i in range(shnum):
            _, sh_type, _, _, offset, _, link, count = section(i)
            if sh_type != SHT_GNU_VERNEED:
                continue
            strtab = section(link)[4]
            entry = offset
            for _ in range(count):
                _, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, entry)
                aux = entry + vn_aux
                for _ in range(vn_cnt):
                    _, flags, _, name, next_aux = struct.unpack_from("<IHHII", data, aux)
                    if name_at(strtab, name) == version:
                        found = True
                        if not flags & VER_FLG_WEAK:
                            struct.pack_into("<H", data, aux + 4, flags | VER_FLG_WEAK)
                            print(f"{path}: {version} (from {name_at(strtab, vn_file)}) marked weak")
                        else:
                            print(f"{path}: {version} is already weak")
                    aux += next_aux
                    if next_aux == 0:
                        break
                entry += vn_next
                if vn_next == 0:
                    break
        if not found:
            print(f"{path}: does not require {version}", file=sys.stderr)
            return 1
        f.seek(0)
        f.write(data)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
