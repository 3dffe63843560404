/* helpdesk.core's Redis connection over hiredis (src/redis.c). */
#ifndef HELPDESK_REDIS_H
#define HELPDESK_REDIS_H

#include <lua.h>

/* Registers the connection's metatable and sets core.redis_connect in the
 * table on top of the stack. */
void hd_redis_open(lua_State *L);

#endif
