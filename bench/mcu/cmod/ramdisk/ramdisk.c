// `chub bench --mcu`: a block device in C over static RAM, outside the GC
// heap, for VfsLfs2 on the qemu port. It stands for the ESP32's
// esp32.Partition (also a C object behind the same readblocks/writeblocks/
// ioctl protocol): the instruction counts then hold LittleFS and the call
// protocol, not a Python block device's bytecode. Flash time is not
// modelled here (the unix board's flash timing option does that).
//   import ramdisk; dev = ramdisk.RamDisk()   # 64 blocks of 4096 bytes
#include <string.h>

#include "py/runtime.h"
#include "extmod/vfs.h"

#define RAMDISK_BLOCK (4096)
#define RAMDISK_BLOCKS (64)

static uint8_t ramdisk_data[RAMDISK_BLOCK * RAMDISK_BLOCKS];

typedef struct _ramdisk_obj_t {
    mp_obj_base_t base;
    uint32_t reads;
    uint32_t writes;
    uint32_t erases;
} ramdisk_obj_t;

static mp_obj_t ramdisk_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 0, 0, false);
    ramdisk_obj_t *self = mp_obj_malloc(ramdisk_obj_t, type);
    self->reads = self->writes = self->erases = 0;
    memset(ramdisk_data, 0xff, sizeof(ramdisk_data));
    return MP_OBJ_FROM_PTR(self);
}

static uint8_t *ramdisk_at(mp_obj_t block, mp_obj_t offset, size_t len) {
    mp_int_t a = mp_obj_get_int(block) * RAMDISK_BLOCK + (offset == mp_const_none ? 0 : mp_obj_get_int(offset));
    if (a < 0 || (size_t)a + len > sizeof(ramdisk_data)) {
        mp_raise_ValueError(MP_ERROR_TEXT("out of range"));
    }
    return ramdisk_data + a;
}

static mp_obj_t ramdisk_readblocks(size_t n_args, const mp_obj_t *args) {
    ramdisk_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    mp_buffer_info_t buf;
    mp_get_buffer_raise(args[2], &buf, MP_BUFFER_WRITE);
    memcpy(buf.buf, ramdisk_at(args[1], n_args > 3 ? args[3] : mp_const_none, buf.len), buf.len);
    self->reads++;
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(ramdisk_readblocks_obj, 3, 4, ramdisk_readblocks);

static mp_obj_t ramdisk_writeblocks(size_t n_args, const mp_obj_t *args) {
    ramdisk_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    mp_buffer_info_t buf;
    mp_get_buffer_raise(args[2], &buf, MP_BUFFER_READ);
    memcpy(ramdisk_at(args[1], n_args > 3 ? args[3] : mp_const_none, buf.len), buf.buf, buf.len);
    self->writes++;
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(ramdisk_writeblocks_obj, 3, 4, ramdisk_writeblocks);

static mp_obj_t ramdisk_ioctl(mp_obj_t self_in, mp_obj_t op_in, mp_obj_t arg_in) {
    ramdisk_obj_t *self = MP_OBJ_TO_PTR(self_in);
    switch (mp_obj_get_int(op_in)) {
        case MP_BLOCKDEV_IOCTL_BLOCK_COUNT:
            return MP_OBJ_NEW_SMALL_INT(RAMDISK_BLOCKS);
        case MP_BLOCKDEV_IOCTL_BLOCK_SIZE:
            return MP_OBJ_NEW_SMALL_INT(RAMDISK_BLOCK);
        case MP_BLOCKDEV_IOCTL_BLOCK_ERASE:
            memset(ramdisk_at(arg_in, mp_const_none, RAMDISK_BLOCK), 0xff, RAMDISK_BLOCK);
            self->erases++;
            return MP_OBJ_NEW_SMALL_INT(0);
        default:
            return MP_OBJ_NEW_SMALL_INT(0);
    }
}
static MP_DEFINE_CONST_FUN_OBJ_3(ramdisk_ioctl_obj, ramdisk_ioctl);

// (reads, writes, erases) since the device was made
static mp_obj_t ramdisk_counts(mp_obj_t self_in) {
    ramdisk_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_obj_t t[3] = {mp_obj_new_int_from_uint(self->reads), mp_obj_new_int_from_uint(self->writes),
                     mp_obj_new_int_from_uint(self->erases)};
    return mp_obj_new_tuple(3, t);
}
static MP_DEFINE_CONST_FUN_OBJ_1(ramdisk_counts_obj, ramdisk_counts);

static const mp_rom_map_elem_t ramdisk_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_readblocks), MP_ROM_PTR(&ramdisk_readblocks_obj) },
    { MP_ROM_QSTR(MP_QSTR_writeblocks), MP_ROM_PTR(&ramdisk_writeblocks_obj) },
    { MP_ROM_QSTR(MP_QSTR_ioctl), MP_ROM_PTR(&ramdisk_ioctl_obj) },
    { MP_ROM_QSTR(MP_QSTR_counts), MP_ROM_PTR(&ramdisk_counts_obj) },
};
static MP_DEFINE_CONST_DICT(ramdisk_locals, ramdisk_locals_table);

static MP_DEFINE_CONST_OBJ_TYPE(ramdisk_type, MP_QSTR_RamDisk, MP_TYPE_FLAG_NONE,
    make_new, ramdisk_make_new, locals_dict, &ramdisk_locals);

static const mp_rom_map_elem_t ramdisk_module_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_ramdisk) },
    { MP_ROM_QSTR(MP_QSTR_RamDisk), MP_ROM_PTR(&ramdisk_type) },
};
static MP_DEFINE_CONST_DICT(ramdisk_module_globals, ramdisk_module_table);

const mp_obj_module_t ramdisk_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&ramdisk_module_globals,
};
MP_REGISTER_MODULE(MP_QSTR_ramdisk, ramdisk_module);
