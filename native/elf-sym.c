// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* ELF symbol lookup (elf-sym.h), on libelf. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <gelf.h>
#include <libelf.h>

#include "elf-sym.h"

/* File offset of a function symbol (for uprobes), from .dynsym or .symtab:
 * the symbol's address mapped through the PT_LOAD segment that holds it.
 * One pass over the ELF for all names; libbpf's attach-by-name would parse
 * the file again for every symbol and variant (seconds for a real libcudart). */
int resolve_syms(const char *path, const char *const *names, int n, size_t *offs)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), found = 0;
	Elf *e;
	Elf_Scn *scn = NULL;
	size_t nph;

	memset(offs, 0, n * sizeof(*offs));
	if (fd < 0)
		return -errno;
	elf_version(EV_CURRENT);
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF || elf_getphdrnum(e, &nph)) {
		if (e)
			elf_end(e);
		close(fd);
		return -ENOEXEC;
	}
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB))
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && sh.sh_entsize && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *name;

			if (!gelf_getsym(data, i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
			    sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			name = elf_strptr(e, sh.sh_link, sym.st_name);
			for (int k = 0; name && k < n; k++) {
				if (offs[k] || strcmp(name, names[k]))
					continue;
				for (size_t p = 0; p < nph; p++) {
					GElf_Phdr ph;
					if (gelf_getphdr(e, p, &ph) && ph.p_type == PT_LOAD && sym.st_value >= ph.p_vaddr &&
					    sym.st_value < ph.p_vaddr + ph.p_memsz) {
						offs[k] = sym.st_value - ph.p_vaddr + ph.p_offset;
						found++;
						break;
					}
				}
			}
		}
	}
	elf_end(e);
	close(fd);
	return found;
}
