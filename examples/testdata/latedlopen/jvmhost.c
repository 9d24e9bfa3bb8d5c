/* A native host that creates its JVM late: it sleeps (argv[1] seconds),
 * then dlopens a libjvm.so (argv[2]) and creates a JVM through JNI with
 * the options that follow, and runs JavaChurn.main, which says ready,
 * churns on "go" and returns when stdin closes. */
#include <dlfcn.h>
#include <jni.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef jint (*create_vm)(JavaVM **, void **, void *);

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: jvmhost SECONDS LIBJVM [JVM OPTION...]\n");
        return 2;
    }
    usleep((useconds_t)(atof(argv[1]) * 1e6));
    void *lib = dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    create_vm create = (create_vm)dlsym(lib, "JNI_CreateJavaVM");
    if (!create) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return 1;
    }
    JavaVMOption opts[16];
    int n = 0;
    for (int i = 3; i < argc && n < 16; i++)
        opts[n++].optionString = argv[i];
    JavaVMInitArgs args = {.version = JNI_VERSION_10, .nOptions = n, .options = opts};
    JavaVM *vm;
    JNIEnv *env;
    if (create(&vm, (void **)&env, &args) != JNI_OK) {
        fprintf(stderr, "JNI_CreateJavaVM failed\n");
        return 1;
    }
    jclass cls = (*env)->FindClass(env, "JavaChurn");
    jmethodID m = cls ? (*env)->GetStaticMethodID(env, cls, "main", "([Ljava/lang/String;)V") : NULL;
    jclass str = (*env)->FindClass(env, "java/lang/String");
    if (!m || !str) {
        (*env)->ExceptionDescribe(env);
        return 1;
    }
    (*env)->CallStaticVoidMethod(env, cls, m, (*env)->NewObjectArray(env, 0, str, NULL));
    if ((*env)->ExceptionCheck(env)) {
        (*env)->ExceptionDescribe(env);
        return 1;
    }
    (*vm)->DestroyJavaVM(vm);
    return 0;
}
