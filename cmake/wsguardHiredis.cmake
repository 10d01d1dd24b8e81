# Finds hiredis for wsguard/redis.hpp and defines wsguard::hiredis, an
# INTERFACE IMPORTED target carrying hiredis' include path and library.
# Used by wsguard's CMakeLists.txt and, installed beside wsguardConfig.cmake,
# by the package config: both find hiredis the same way. In order:
#   1. hiredis' own CMake package (hiredis >= 1.0, vcpkg): hiredis::hiredis
#   2. pkg-config's hiredis module (every distribution's libhiredis-dev)
#   3. the header and the library on the default search paths
# Sets wsguard_HIREDIS_FOUND. Defines nothing when hiredis is absent.
set(wsguard_HIREDIS_FOUND FALSE)
if(TARGET wsguard::hiredis)
  set(wsguard_HIREDIS_FOUND TRUE)
  return()
endif()
# An add_subdirectory build needs the target visible from the parent project.
set(_wsguard_hiredis_scope "")
if(NOT CMAKE_FIND_PACKAGE_NAME)
  set(_wsguard_hiredis_scope GLOBAL)
endif()

find_package(hiredis CONFIG QUIET)
if(TARGET hiredis::hiredis)
  add_library(wsguard::hiredis INTERFACE IMPORTED ${_wsguard_hiredis_scope})
  set_target_properties(wsguard::hiredis PROPERTIES INTERFACE_LINK_LIBRARIES hiredis::hiredis)
else()
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(wsguard_PC_HIREDIS QUIET hiredis)
  endif()
  find_path(wsguard_HIREDIS_INCLUDE_DIR hiredis/hiredis.h HINTS ${wsguard_PC_HIREDIS_INCLUDEDIR}/.. ${wsguard_PC_HIREDIS_INCLUDE_DIRS})
  find_library(wsguard_HIREDIS_LIBRARY NAMES hiredis HINTS ${wsguard_PC_HIREDIS_LIBRARY_DIRS} ${wsguard_PC_HIREDIS_LIBDIR})
  mark_as_advanced(wsguard_HIREDIS_INCLUDE_DIR wsguard_HIREDIS_LIBRARY)
  if(wsguard_HIREDIS_INCLUDE_DIR AND wsguard_HIREDIS_LIBRARY)
    add_library(wsguard::hiredis INTERFACE IMPORTED ${_wsguard_hiredis_scope})
    set_target_properties(wsguard::hiredis PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${wsguard_HIREDIS_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${wsguard_HIREDIS_LIBRARY}")
  endif()
endif()
if(TARGET wsguard::hiredis)
  set(wsguard_HIREDIS_FOUND TRUE)
endif()
unset(_wsguard_hiredis_scope)
