#  Builds the dashboard (web/) and embeds it into the gateway as
#  ${GATEWAY_WEB_ASSETS_C}, a generated C table served by gateway_web.c.
#  Included from services/gateway/CMakeLists.txt. Needs node + npm (the
#  npm registry for the first `npm ci`) and python3.
find_program (NODE_EXECUTABLE node REQUIRED)
find_package (Python3 COMPONENTS Interpreter REQUIRED)

set (WEB_DIR ${CMAKE_SOURCE_DIR}/web)
set (WEB_DIST ${CMAKE_CURRENT_BINARY_DIR}/web-dist)
set (WEB_NPM_STAMP ${CMAKE_CURRENT_BINARY_DIR}/web-npm-ci.stamp)
set (GATEWAY_WEB_ASSETS_C ${CMAKE_CURRENT_BINARY_DIR}/gateway_web_assets.c)
file (GLOB_RECURSE WEB_SOURCES CONFIGURE_DEPENDS ${WEB_DIR}/src/*)

add_custom_command (
    OUTPUT ${WEB_NPM_STAMP}
    COMMAND ${CMAKE_COMMAND} -DWEB_DIR=${WEB_DIR} -DSTAMP=${WEB_NPM_STAMP}
            -P ${WEB_DIR}/npm_ci.cmake
    DEPENDS ${WEB_DIR}/package.json ${WEB_DIR}/package-lock.json ${WEB_DIR}/npm_ci.cmake
    COMMENT "web: npm ci (skipped when node_modules matches package-lock.json)"
    VERBATIM)

#  Each build directory builds into its own web-dist, so parallel builds
#  never share output.
add_custom_command (
    OUTPUT ${GATEWAY_WEB_ASSETS_C}
    COMMAND ${NODE_EXECUTABLE} ${WEB_DIR}/build.mjs ${WEB_DIST}
    COMMAND ${Python3_EXECUTABLE} ${WEB_DIR}/embed.py ${WEB_DIST} ${GATEWAY_WEB_ASSETS_C}
    COMMAND ${CMAKE_COMMAND} -E touch ${GATEWAY_WEB_ASSETS_C}
    DEPENDS ${WEB_NPM_STAMP} ${WEB_SOURCES} ${WEB_DIR}/build.mjs ${WEB_DIR}/embed.py
    WORKING_DIRECTORY ${WEB_DIR}
    COMMENT "web: build the dashboard and embed it"
    VERBATIM)
