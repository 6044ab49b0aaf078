/*
 * Golden payloads of the PV trace records, from C structs declared the way Xen declares them
 * (packed attributes and bitfields as in the seed's xen/arch/x86/trace.c, 06a73c9f93, and
 * today's xen/arch/x86/pv/trace.c / xen/common/trace.c), compiled by gcc at test time.
 *
 * Input (stdin), one vector per line:  ABI ARCH WIDTH POINT v0 v1 ...
 *   values are C integer literals, converted to each Xen function's parameter types here.
 * Output, one line per vector:  EVENT(hex) PAYLOAD(hex, "-" if empty) name=value ...
 *   or "none" when that hypervisor has no such record (e.g. 4GB emulation on x86_64).
 *
 * The x86_32 hypervisor builds are emulated on the x86_64 host: on a -m32 build
 * "unsigned long" (and so eip/va fields) is 4 bytes, which we write as uint32_t; a uint64_t
 * inside a struct is 4-byte aligned on i386 but every such struct here already ends on a
 * multiple of 8, so sizes and offsets do not change.  l1_pgentry_t wraps intpte_t, a 32-bit
 * integer on non-PAE builds and a 64-bit one on PAE builds.  The seed's TRC_PV_64_FLAG is 0
 * on x86_32.  test_pv_golden.py also compiles the i386 layouts with -m32 -c (static asserts)
 * when the compiler can.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRC_PV          0x0020f000u /* seed: ids TRC_PV + n */
#define TRC_PV_ENTRY    0x00201000u /* today */
#define TRC_PV_SUBCALL  0x00202000u
#define TRC_64_FLAG     0x100u

#define HYPERCALL 1
#define TRAP 3
#define PAGE_FAULT 4
#define FORCED_INVALID_OP 5
#define EMULATE_PRIVOP 6
#define EMULATE_4GB 7
#define MATH_STATE_RESTORE 8
#define PAGING_FIXUP 9
#define GDT_LDT_MAPPING_FAULT 10
#define PTWR_EMULATION 11
#define PTWR_EMULATION_PAE 12
#define HYPERCALL_V2 13
#define HYPERCALL_SUBCALL 14

#define ARG_32(i) (1u << (20 + 2 * (i)))

typedef unsigned long long ull;

static void out(uint32_t event, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    printf("%08x ", event);
    if ( n == 0 )
        printf("-");
    for ( i = 0; i < n; i++ )
        printf("%02x", b[i]);
}

#define FIELD(name, val) printf(" %s=%llu", name, (ull)(val))

/* ---- seed, x86_64 hypervisor (unsigned long is 8 bytes here) --------------------------- */

static void seed64(int w64, const char *pt, ull *v)
{
    if ( !strcmp(pt, "hypercall") ) {
        if ( !w64 ) {
            struct { uint32_t eip, eax; } __attribute__((packed)) d;
            d.eip = v[0]; d.eax = v[1];
            out(TRC_PV + HYPERCALL, &d, sizeof(d));
            FIELD("eip", d.eip); FIELD("eax", d.eax);
        } else {
            struct { unsigned long eip; uint32_t eax; } __attribute__((packed)) d;
            d.eip = v[0]; d.eax = v[1];
            out(TRC_PV + HYPERCALL + TRC_64_FLAG, &d, sizeof(d));
            FIELD("eip", d.eip); FIELD("eax", d.eax);
        }
    } else if ( !strcmp(pt, "trap") ) {
        int trapnr = v[0]; unsigned long eip = v[1]; int uec = v[2]; unsigned ec = v[3];
        if ( !w64 ) {
            struct { unsigned eip:32, trapnr:15, use_error_code:1, error_code:16; }
                __attribute__((packed)) d;
            d.eip = eip; d.trapnr = trapnr; d.error_code = ec; d.use_error_code = !!uec;
            out(TRC_PV + TRAP, &d, sizeof(d));
            FIELD("eip", d.eip); FIELD("trapnr", d.trapnr);
            FIELD("use_error_code", d.use_error_code); FIELD("error_code", d.error_code);
        } else {
            struct { unsigned long eip; unsigned trapnr:15, use_error_code:1, error_code:16; }
                __attribute__((packed)) d;
            d.eip = eip; d.trapnr = trapnr; d.error_code = ec; d.use_error_code = !!uec;
            out(TRC_PV + TRAP + TRC_64_FLAG, &d, sizeof(d));
            FIELD("eip", d.eip); FIELD("trapnr", d.trapnr);
            FIELD("use_error_code", d.use_error_code); FIELD("error_code", d.error_code);
        }
    } else if ( !strcmp(pt, "page_fault") ) {
        unsigned long eip = v[0], addr = v[1]; unsigned ec = v[2];
        if ( !w64 ) {
            struct { uint32_t eip, addr, error_code; } __attribute__((packed)) d;
            d.eip = eip; d.addr = addr; d.error_code = ec;
            out(TRC_PV + PAGE_FAULT, &d, sizeof(d));
            FIELD("eip", d.eip); FIELD("addr", d.addr); FIELD("error_code", d.error_code);
        } else {
            struct { unsigned long eip, addr; uint32_t error_code; } __attribute__((packed)) d;
            d.eip = eip; d.addr = addr; d.error_code = ec;
            out(TRC_PV + PAGE_FAULT + TRC_64_FLAG, &d, sizeof(d));
            FIELD("eip", d.eip); FIELD("addr", d.addr); FIELD("error_code", d.error_code);
        }
    } else if ( !strcmp(pt, "forced_invalid_op") || !strcmp(pt, "emulate_privop") ) {
        unsigned event = TRC_PV + (!strcmp(pt, "emulate_privop") ? EMULATE_PRIVOP
                                                                  : FORCED_INVALID_OP);
        unsigned long va = v[0];
        if ( !w64 ) {
            uint32_t d = va;
            out(event, &d, sizeof(d));
            FIELD("eip", d);
        } else {
            out(event | TRC_64_FLAG, &va, sizeof(va));
            FIELD("eip", va);
        }
    } else if ( !strcmp(pt, "paging_fixup") || !strcmp(pt, "gdt_ldt_mapping_fault") ) {
        int fix = !strcmp(pt, "paging_fixup");
        unsigned event = TRC_PV + (fix ? PAGING_FIXUP : GDT_LDT_MAPPING_FAULT);
        unsigned long va1 = v[0], va2 = v[1];
        if ( !w64 ) {
            struct { uint32_t va1, va2; } __attribute__((packed)) d;
            d.va1 = va1; d.va2 = va2;
            out(event, &d, sizeof(d));
            FIELD("eip", d.va1); FIELD(fix ? "addr" : "offset", d.va2);
        } else {
            struct { unsigned long va1, va2; } __attribute__((packed)) d;
            d.va1 = va1; d.va2 = va2;
            out(event | TRC_64_FLAG, &d, sizeof(d));
            FIELD("eip", d.va1); FIELD(fix ? "addr" : "offset", d.va2);
        }
    } else if ( !strcmp(pt, "ptwr_emulation") ) {
        typedef struct { uint64_t l1; } l1_pgentry_t;  /* intpte_t is 64-bit on x86_64 */
        unsigned long addr = v[0]; l1_pgentry_t npte = { v[1] }; unsigned long eip = v[2];
        if ( !w64 ) {
            struct { l1_pgentry_t pte; uint32_t addr, eip; } __attribute__((packed)) d;
            d.addr = addr; d.eip = eip; d.pte = npte;
            out(TRC_PV + PTWR_EMULATION_PAE, &d, sizeof(d));
            FIELD("pte", d.pte.l1); FIELD("addr", d.addr); FIELD("eip", d.eip);
        } else {
            struct { l1_pgentry_t pte; unsigned long addr, eip; } d;
            d.addr = addr; d.eip = eip; d.pte = npte;
            out(TRC_PV + PTWR_EMULATION + TRC_64_FLAG, &d, sizeof(d));
            FIELD("pte", d.pte.l1); FIELD("addr", d.addr); FIELD("eip", d.eip);
        }
    } else if ( !strcmp(pt, "math_state_restore") ) {
        out(TRC_PV + MATH_STATE_RESTORE, NULL, 0);  /* TRACE_0D */
    } else {
        printf("none");  /* emulate_4gb: x86_32 only; no multicall sub-call records */
    }
}

/* ---- seed, x86_32 hypervisors (emulated: unsigned long -> uint32_t, flag 0) ------------- */

static void seed32(int pae, const char *pt, ull *v)
{
    typedef uint32_t ulong32;  /* "unsigned long" of the -m32 build */

    if ( !strcmp(pt, "hypercall") ) {
        struct { ulong32 eip; uint32_t eax; } __attribute__((packed)) d;
        d.eip = v[0]; d.eax = v[1];
        out(TRC_PV + HYPERCALL, &d, sizeof(d));
        FIELD("eip", d.eip); FIELD("eax", d.eax);
    } else if ( !strcmp(pt, "trap") ) {
        int trapnr = v[0]; ulong32 eip = v[1]; int uec = v[2]; unsigned ec = v[3];
        struct { ulong32 eip; unsigned trapnr:15, use_error_code:1, error_code:16; }
            __attribute__((packed)) d;
        d.eip = eip; d.trapnr = trapnr; d.error_code = ec; d.use_error_code = !!uec;
        out(TRC_PV + TRAP, &d, sizeof(d));
        FIELD("eip", d.eip); FIELD("trapnr", d.trapnr);
        FIELD("use_error_code", d.use_error_code); FIELD("error_code", d.error_code);
    } else if ( !strcmp(pt, "page_fault") ) {
        struct { ulong32 eip, addr; uint32_t error_code; } __attribute__((packed)) d;
        d.eip = v[0]; d.addr = v[1]; d.error_code = (unsigned)v[2];
        out(TRC_PV + PAGE_FAULT, &d, sizeof(d));
        FIELD("eip", d.eip); FIELD("addr", d.addr); FIELD("error_code", d.error_code);
    } else if ( !strcmp(pt, "forced_invalid_op") || !strcmp(pt, "emulate_privop") ) {
        ulong32 va = v[0];
        out(TRC_PV + (!strcmp(pt, "emulate_privop") ? EMULATE_PRIVOP : FORCED_INVALID_OP),
            &va, sizeof(va));
        FIELD("eip", va);
    } else if ( !strcmp(pt, "emulate_4gb") ) {
        uint32_t d[1] = { (uint32_t)(ulong32)v[0] };  /* TRACE_1D: u32 words */
        out(TRC_PV + EMULATE_4GB, d, sizeof(d));
        FIELD("eip", d[0]);
    } else if ( !strcmp(pt, "paging_fixup") || !strcmp(pt, "gdt_ldt_mapping_fault") ) {
        int fix = !strcmp(pt, "paging_fixup");
        struct { ulong32 va1, va2; } __attribute__((packed)) d;
        d.va1 = v[0]; d.va2 = v[1];
        out(TRC_PV + (fix ? PAGING_FIXUP : GDT_LDT_MAPPING_FAULT), &d, sizeof(d));
        FIELD("eip", d.va1); FIELD(fix ? "addr" : "offset", d.va2);
    } else if ( !strcmp(pt, "ptwr_emulation") ) {
        if ( pae ) {
            typedef struct { uint64_t l1; } l1_pgentry_t;
            struct { l1_pgentry_t pte; ulong32 addr, eip; } d;
            d.addr = v[0]; d.pte.l1 = v[1]; d.eip = v[2];
            out(TRC_PV + PTWR_EMULATION_PAE, &d, sizeof(d));
            FIELD("pte", d.pte.l1); FIELD("addr", d.addr); FIELD("eip", d.eip);
        } else {
            typedef struct { uint32_t l1; } l1_pgentry_t;
            struct { l1_pgentry_t pte; ulong32 addr, eip; } d;
            d.addr = v[0]; d.pte.l1 = v[1]; d.eip = v[2];
            out(TRC_PV + PTWR_EMULATION, &d, sizeof(d));
            FIELD("pte", d.pte.l1); FIELD("addr", d.addr); FIELD("eip", d.eip);
        }
    } else if ( !strcmp(pt, "math_state_restore") ) {
        out(TRC_PV + MATH_STATE_RESTORE, NULL, 0);
    } else {
        printf("none");
    }
}

/* ---- today, x86_64 ----------------------------------------------------------------------- */

static void trace_hypercall(uint32_t event, unsigned long op, const unsigned long *args)
{
    struct { uint32_t op; uint32_t args[6]; } d;
    uint32_t *a = d.args;
    int i, n;
#define APPEND_ARG32(i) do { *a++ = args[(i)]; d.op |= ARG_32(i); } while ( 0 )

    d.op = op;
    switch ( op ) {
    case 1:  APPEND_ARG32(1); break;                    /* mmu_update: count */
    case 13: APPEND_ARG32(1); break;                    /* multicall: count */
    case 20: APPEND_ARG32(0); APPEND_ARG32(2); break;   /* grant_table_op: cmd, count */
    case 24: APPEND_ARG32(0); APPEND_ARG32(1); break;   /* vcpu_op: cmd, vcpuid */
    case 26: APPEND_ARG32(1); break;                    /* mmuext_op: count */
    case 29: APPEND_ARG32(0); break;                    /* sched_op: cmd */
    }
    n = 1 + (a - d.args);
    out(event, &d, 4 * n);
    FIELD("op", d.op & 0xfffff);
    for ( i = 0; i < 6; i++ ) {
        unsigned kind = (d.op >> (20 + 2 * i)) & 3;
        if ( kind == 1 ) {
            char name[8];
            snprintf(name, sizeof(name), "arg%d", i);
            FIELD(name, (uint32_t)args[i]);
        }
    }
}

static void xen4(int w64, const char *pt, ull *v)
{
    if ( !strcmp(pt, "hypercall") || !strcmp(pt, "multicall_call") ) {
        unsigned long args[6];
        int i;
        for ( i = 0; i < 6; i++ )
            args[i] = v[1 + i];
        if ( !strcmp(pt, "hypercall") )
            trace_hypercall(TRC_PV_ENTRY + HYPERCALL_V2, v[0], args);
        else
            trace_hypercall(TRC_PV_SUBCALL + HYPERCALL_SUBCALL, v[0], args);
    } else if ( !strcmp(pt, "trap") ) {
        int trapnr = v[0]; unsigned long eip = v[1]; int uec = v[2]; unsigned ec = v[3];
        if ( !w64 ) {
            struct { uint32_t eip; uint16_t trapnr:15; _Bool use_error_code:1;
                     uint16_t error_code; } d = {
                .eip = eip, .trapnr = trapnr, .use_error_code = uec, .error_code = ec };
            out(TRC_PV_ENTRY + TRAP, &d, sizeof(d));
            FIELD("eip", d.eip); FIELD("trapnr", d.trapnr);
            FIELD("use_error_code", d.use_error_code); FIELD("error_code", d.error_code);
        } else {
            struct __attribute__((packed)) { uint64_t rip; uint16_t trapnr:15;
                     _Bool use_error_code:1; uint16_t error_code; } d = {
                .rip = eip, .trapnr = trapnr, .use_error_code = uec, .error_code = ec };
            out(TRC_PV_ENTRY + TRAP + TRC_64_FLAG, &d, sizeof(d));
            FIELD("eip", d.rip); FIELD("trapnr", d.trapnr);
            FIELD("use_error_code", d.use_error_code); FIELD("error_code", d.error_code);
        }
    } else if ( !strcmp(pt, "page_fault") ) {
        unsigned long eip = v[0], addr = v[1]; unsigned ec = v[2];
        if ( !w64 ) {
            struct { uint32_t eip, addr, error_code; } d = {
                .eip = eip, .addr = addr, .error_code = ec };
            out(TRC_PV_ENTRY + PAGE_FAULT, &d, sizeof(d));
            FIELD("eip", d.eip); FIELD("addr", d.addr); FIELD("error_code", d.error_code);
        } else {
            struct __attribute__((packed)) { uint64_t rip, addr; uint32_t error_code; } d = {
                .rip = eip, .addr = addr, .error_code = ec };
            out(TRC_PV_ENTRY + PAGE_FAULT + TRC_64_FLAG, &d, sizeof(d));
            FIELD("eip", d.rip); FIELD("addr", d.addr); FIELD("error_code", d.error_code);
        }
    } else if ( !strcmp(pt, "forced_invalid_op") || !strcmp(pt, "emulate_privop") ) {
        unsigned event = TRC_PV_ENTRY + (!strcmp(pt, "emulate_privop") ? EMULATE_PRIVOP
                                                                        : FORCED_INVALID_OP);
        unsigned long va = v[0];
        if ( !w64 ) {
            uint32_t d = va;
            out(event, &d, sizeof(d));
            FIELD("eip", d);
        } else {
            out(event | TRC_64_FLAG, &va, sizeof(va));
            FIELD("eip", va);
        }
    } else if ( !strcmp(pt, "paging_fixup") || !strcmp(pt, "gdt_ldt_mapping_fault") ) {
        int fix = !strcmp(pt, "paging_fixup");
        unsigned event = TRC_PV_ENTRY + (fix ? PAGING_FIXUP : GDT_LDT_MAPPING_FAULT);
        unsigned long va1 = v[0], va2 = v[1];
        if ( !w64 ) {
            struct { uint32_t va1, va2; } d = { .va1 = va1, .va2 = va2 };
            out(event, &d, sizeof(d));
            FIELD("eip", d.va1); FIELD(fix ? "addr" : "offset", d.va2);
        } else {
            struct { uint64_t va1, va2; } d = { .va1 = va1, .va2 = va2 };
            out(event | TRC_64_FLAG, &d, sizeof(d));
            FIELD("eip", d.va1); FIELD(fix ? "addr" : "offset", d.va2);
        }
    } else if ( !strcmp(pt, "ptwr_emulation") ) {
        unsigned long addr = v[0]; uint64_t npte = v[1]; unsigned long eip = v[2];
        if ( !w64 ) {
            struct { uint64_t pte; uint32_t addr, eip; } d = {
                .pte = npte, .addr = addr, .eip = eip };
            out(TRC_PV_ENTRY + PTWR_EMULATION_PAE, &d, sizeof(d));
            FIELD("pte", d.pte); FIELD("addr", d.addr); FIELD("eip", d.eip);
        } else {
            struct { uint64_t pte; uint64_t addr, rip; } d = {
                .pte = npte, .addr = addr, .rip = eip };
            out(TRC_PV_ENTRY + PTWR_EMULATION + TRC_64_FLAG, &d, sizeof(d));
            FIELD("pte", d.pte); FIELD("addr", d.addr); FIELD("eip", d.rip);
        }
    } else if ( !strcmp(pt, "math_state_restore") ) {
        out(TRC_PV_ENTRY + MATH_STATE_RESTORE, NULL, 0);  /* TRACE_TIME(event) */
    } else {
        printf("none");
    }
}

int main(void)
{
    char line[1024];

    while ( fgets(line, sizeof(line), stdin) ) {
        char abi[16], arch[16], pt[32];
        int width, n, used;
        ull v[8] = { 0 };
        char *p;

        if ( sscanf(line, "%15s %15s %d %31s%n", abi, arch, &width, pt, &used) != 4 )
            return 2;
        p = line + used;
        for ( n = 0; n < 8; n++ ) {
            char *end;
            v[n] = strtoull(p, &end, 0);
            if ( end == p )
                break;
            p = end;
        }
        if ( !strcmp(abi, "xen-4") )
            xen4(width == 64, pt, v);
        else if ( !strcmp(arch, "x86_64") )
            seed64(width == 64, pt, v);
        else
            seed32(!strcmp(arch, "x86_32-pae"), pt, v);
        printf("\n");
    }
    return 0;
}
