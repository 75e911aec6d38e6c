/*  =========================================================================
    gateway_api_password - passwords: hashed and verified on a bounded pool, new ones checked

    argon2id takes 64 MiB per call, so a login storm must not exhaust
    memory: two slots, a bounded wait for one. A new password must pass
    cracklib's check against the system dictionary. Unknown emails are
    verified against a dummy hash, so they cost the time a wrong password
    does.
    =========================================================================
*/
#include "gateway_api.h"

#include <crack.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <time.h>

#define S_PASSWORD_SLOTS 2  //  concurrent argon2id calls (2 cores, 64 MiB each)
#define S_PASSWORD_WAIT_S 5 //  longest wait for a slot before 503

//  Password pool and the dummy hash, set up once per process.
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static sem_t s_password_slots;
static char s_dummy_hash[crypto_pwhash_STRBYTES];
static bool s_ready;
//  cracklib keeps state of the dictionary it reads in statics: one check
//  at a time. A check takes about 10 ms; registrations are rare and limited.
static pthread_mutex_t s_crack_lock = PTHREAD_MUTEX_INITIALIZER;
static bool s_crack_ready; //  the system dictionary is there

static void
s_init_once (void)
{
    if (sodium_init () < 0 || sem_init (&s_password_slots, 0, S_PASSWORD_SLOTS) != 0) {
        zsys_error ("gateway api - cannot initialise libsodium or the password pool");
        return;
    }
    //  Unknown emails are verified against this, so they cost the same time
    //  as a wrong password and do not reveal which emails exist.
    char password[2 * 16 + 1];
    uint8_t random[16];
    randombytes_buf (random, sizeof random);
    sodium_bin2hex (password, sizeof password, random, sizeof random);
    if (crypto_pwhash_str (s_dummy_hash, password, strlen (password),
                           crypto_pwhash_OPSLIMIT_INTERACTIVE,
                           crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        zsys_error ("gateway api - cannot compute the dummy password hash");
        return;
    }
    s_ready = true;
    //  Without its dictionary cracklib refuses every password ("error
    //  loading dictionary"); say so once at start, clearly.
    char dictionary[PATH_MAX];
    snprintf (dictionary, sizeof dictionary, "%s.pwd", GetDefaultCracklibDict ());
    s_crack_ready = access (dictionary, R_OK) == 0;
    if (!s_crack_ready)
        zsys_error ("gateway api - no password dictionary at %s (Debian cracklib-runtime), "
                    "registrations will fail",
                    dictionary);
}

//  cracklib calls a password "too simplistic/systematic" when more than
//  3 + 0.09 x its length of its neighbouring characters are one step apart
//  (ab, 32), a bound long random passwords cross by chance: 11 % of 32
//  random hex digits, 51 % of 32 random digits, about 1 % of 32 random
//  letters and digits (cracklib-check, 2,000 each). From S_PASSWORD_LONG
//  characters on it is believed only when a third of the pairs are such
//  steps, which no random password of that length reaches in practice and
//  every run-made one does. (cracklib gives that verdict before its
//  dictionary look-up; a password this long made of steps and a word would
//  still be refused here.)
#define S_PASSWORD_LONG 20

static bool
s_systematic (const char *password)
{
    size_t pairs = 0, steps = 0;
    for (const char *c = password; c[0] && c[1]; c++, pairs++) {
        int step = tolower ((unsigned char)c[1]) - tolower ((unsigned char)c[0]);
        if (step == 1 || step == -1)
            steps++;
    }
    return 3 * steps >= pairs;
}

//  Stands for "no dictionary to check against" among gateway_api_password_weak's answers.
const char gateway_api_password_unchecked[] = "";

//  NULL when password may be chosen by the user of email and name, else
//  why not, as a sentence for the user (gateway_api_password_unchecked: cannot tell).
//  Long enough is the caller's check.
const char *
gateway_api_password_weak (const char *password, const char *email, const char *name)
{
    if (!s_crack_ready)
        return gateway_api_password_unchecked;
    //  The local part of the email as the "user name", the name as the
    //  GECOS: cracklib refuses passwords made from either.
    char user[GATEWAY_API_EMAIL_MAX + 1];
    snprintf (user, sizeof user, "%.*s", (int)strcspn (email, "@"), email);
    pthread_mutex_lock (&s_crack_lock);
    const char *reason = FascistCheckUser (password, GetDefaultCracklibDict (), user, name);
    pthread_mutex_unlock (&s_crack_lock);
    if (!reason)
        return NULL;
    if (strstr (reason, "error loading"))
        return gateway_api_password_unchecked;
    if (strstr (reason, "systematic") && strlen (password) >= S_PASSWORD_LONG &&
        !s_systematic (password))
        return NULL;
    //  cracklib's reasons are static strings such as "it is based on a
    //  dictionary word"; one sentence per kind is clearer to a person.
    if (strstr (reason, "dictionary word"))
        return "This password is too common: it is a dictionary word or close to one. "
               "Choose a longer one, for example a few unrelated words.";
    if (strstr (reason, "simplistic") || strstr (reason, "systematic") ||
        strstr (reason, "DIFFERENT") || strstr (reason, "whitespace"))
        return "This password is too easy to guess: it follows a simple pattern. "
               "Choose a longer one, for example a few unrelated words.";
    if (strstr (reason, "username") || strstr (reason, "password entry"))
        return "This password is too easy to guess: it is made from your name or email. "
               "Choose another.";
    if (strstr (reason, "short"))
        return "This password is too easy to guess: it is too short. Choose a longer one.";
    return "This password is too easy to guess. Choose a longer one, "
           "for example a few unrelated words.";
}

//  Waits at most S_PASSWORD_WAIT_S for a slot of the password pool. 0 or -1.
static int
s_password_slot_take (void)
{
    if (!s_ready)
        return -1;
    struct timespec deadline;
    clock_gettime (CLOCK_REALTIME, &deadline);
    deadline.tv_sec += S_PASSWORD_WAIT_S;
    while (sem_timedwait (&s_password_slots, &deadline) == -1) {
        if (errno != EINTR)
            return -1;
    }
    return 0;
}

//  Hashes password into hash. 0, -1 failed, -2 the pool stayed busy.
int
gateway_api_password_hash (const char *password, char hash[crypto_pwhash_STRBYTES])
{
    if (s_password_slot_take () == -1)
        return -2;
    int rc =
        crypto_pwhash_str (hash, password, strlen (password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                           crypto_pwhash_MEMLIMIT_INTERACTIVE);
    sem_post (&s_password_slots);
    return rc == 0 ? 0 : -1;
}

//  Verifies password against stored (NULL: against the dummy hash, and
//  fails). 0 match, -1 no match, -2 the pool stayed busy.
int
gateway_api_password_verify (const char *stored, const char *password)
{
    char hash[crypto_pwhash_STRBYTES];
    bool known = stored && strlen (stored) < sizeof hash;
    memcpy (hash, known ? stored : s_dummy_hash, known ? strlen (stored) + 1 : sizeof hash);
    if (s_password_slot_take () == -1)
        return -2;
    int rc = crypto_pwhash_str_verify (hash, password, strlen (password));
    sem_post (&s_password_slots);
    return rc == 0 && known ? 0 : -1;
}

bool
gateway_api_password_ready (void)
{
    pthread_once (&s_once, s_init_once);
    return s_ready;
}

//  --------------------------------------------------------------------------
//  Self test: the pool's bound and the hash round trip.
void
gateway_api_password_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_api_password: ");
    //  With both password slots held, a hash waits its 5 s and gives up.
    assert (gateway_api_password_ready ());
    assert (s_password_slot_take () == 0 && s_password_slot_take () == 0);
    char password_hash[crypto_pwhash_STRBYTES];
    int64_t started = zclock_mono ();
    assert (gateway_api_password_hash ("correct horse", password_hash) == -2);
    assert (zclock_mono () - started >= S_PASSWORD_WAIT_S * 1000 - 50);
    sem_post (&s_password_slots);
    sem_post (&s_password_slots);
    assert (gateway_api_password_hash ("correct horse", password_hash) == 0);
    assert (gateway_api_password_verify (password_hash, "correct horse") == 0);
    assert (gateway_api_password_verify (password_hash, "wrong horse") == -1);
    assert (gateway_api_password_verify (NULL, "correct horse") == -1);
    printf ("OK\n");
}
