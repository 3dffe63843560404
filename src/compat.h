/* Lua 5.1 shims for the few 5.2+ API calls the core uses. LuaJIT 2.1 has
 * them already (its lauxlib.h defines luaL_newlib), so test for that rather
 * than for LUA_VERSION_NUM. */
#ifndef HELPDESK_COMPAT_H
#define HELPDESK_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#ifndef luaL_newlib
static void hd_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setfuncs hd_setfuncs
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, l, 0))
#endif

#endif
